"""A fake Hugging Face Hub: a real HTTP server on 127.0.0.1 for tests and benchmarks.

It implements what huggingface_hub 2.x calls to download repositories (see
shared/reference/environment-notes.md §4), so tests use the unmodified client:

- `GET /api/{models,datasets}/<repo>[/revision/<rev>]`: repo info with the resolved `sha`;
- `GET /api/{models,datasets}/<repo>/tree/<rev>[/<dir>]?recursive=...&cursor=...`: the
  listing, paginated with a GitHub-style `Link: <...>; rel="next"` header;
- `HEAD`/`GET /[datasets/]<repo>/resolve/<rev>/<path>`: the file, with `ETag` (sha256 for
  LFS files, the git blob sha1 otherwise, as the real Hub), `X-Repo-Commit` and
  `Content-Length`; `Range: bytes=a-[b]` is answered with 206 and `Content-Range`;
- `GET /api/whoami-v2`: token validation.

Revisions are branches, tags or full commit shas. Errors carry `X-Error-Code`
(`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`) and an invalid
token gets 401 "Invalid credentials in Authorization header", so the client raises its
typed errors. Requests in absolute form (`GET http://host/...`) are served too and
logged as proxied, so the hub doubles as the HTTP proxy of proxy tests.

Repositories are built in memory by tests: `hub.add_repo("org/name").commit({...})`
with bytes, text, `GeneratedContent` (deterministic pseudo-random data of any size,
produced on the fly, for multi-GB benchmarks) or `PathContent` (a file on disk).

Faults: `cut_next()` sends part of one body and drops the connection; `fail_next()`
answers with an HTTP error; `corrupt()` serves altered bytes under the right headers;
`throttle()` limits the body rate; `hold_downloads()` parks file bodies until
released (for deterministic concurrency tests). Every request is logged
(`requests()`, `count()`, `file_downloads()`), so a test can assert "one download".

Failure modes: the server only binds 127.0.0.1; a client that disconnects mid-body is
ignored; `stop()` closes the listener and waits for the serving thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

MiB = 1024 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx", ".h5", ".msgpack")
"""Files stored with Git LFS even when small, as `.gitattributes` of real model repos say."""
LFS_MIN_SIZE = 1 * MiB
"""Other files this size or larger are LFS files too (the Hub requires it above 10 MB)."""
_BODY_CHUNK = 1 * MiB


# ----------------------------------------------------------------------------- contents


class Content(Protocol):
    """The bytes of one file, readable at any offset (so huge files need no memory)."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


@dataclass(frozen=True)
class BytesContent:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


class GeneratedContent:
    """`size` bytes of deterministic pseudo-random data derived from `seed`.

    One random MiB block is generated once; MiB number i is that block with i stamped
    in its first 8 bytes, so no two MiB of a file are equal and any range is cheap.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self._size = size
        self.seed = seed
        self._block = random.Random(seed).randbytes(MiB)

    @property
    def size(self) -> int:
        return self._size

    def _mib(self, index: int) -> bytes:
        return struct.pack("<Q", index ^ (self.seed << 32)) + self._block[8:]

    def read(self, offset: int, length: int) -> bytes:
        end = min(self._size, offset + length)
        parts: list[bytes] = []
        pos = offset
        while pos < end:
            index, within = divmod(pos, MiB)
            take = min(MiB - within, end - pos)
            parts.append(self._mib(index)[within : within + take])
            pos += take
        return b"".join(parts)


@dataclass(frozen=True)
class PathContent:
    path: Path

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def read(self, offset: int, length: int) -> bytes:
        with self.path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)


FileInput = bytes | str | BytesContent | GeneratedContent | PathContent


def _as_content(value: FileInput) -> Content:
    if isinstance(value, bytes):
        return BytesContent(value)
    if isinstance(value, str):
        return BytesContent(value.encode())
    return value


def iter_content(content: Content, chunk: int = 4 * MiB) -> Iterator[bytes]:
    pos = 0
    while pos < content.size:
        data = content.read(pos, min(chunk, content.size - pos))
        if not data:
            return
        yield data
        pos += len(data)


# ----------------------------------------------------------------------------- repositories


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: sha1 of `blob <size>\\0<data>`."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class HubBlob:
    """One file version: its content and the ids the Hub reports for it."""

    content: Content
    size: int
    git_oid: str
    sha256: str | None
    """Set for LFS files: the LFS object id, which the Hub also sends as the ETag."""
    pointer_size: int = 0

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def etag(self) -> str:
        return self.sha256 if self.sha256 is not None else self.git_oid

    @classmethod
    def build(cls, path: str, content: Content, lfs: bool | None = None) -> HubBlob:
        if lfs is None:
            lfs = path.endswith(LFS_SUFFIXES) or content.size >= LFS_MIN_SIZE
        if not lfs:
            data = content.read(0, content.size)
            return cls(content=content, size=len(data), git_oid=git_blob_sha1(data), sha256=None)
        digest = hashlib.sha256()
        for chunk in iter_content(content):
            digest.update(chunk)
        sha256 = digest.hexdigest()
        pointer = (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{sha256}\nsize {content.size}\n"
        ).encode()
        return cls(
            content=content,
            size=content.size,
            git_oid=git_blob_sha1(pointer),
            sha256=sha256,
            pointer_size=len(pointer),
        )


@dataclass(frozen=True)
class HubCommit:
    sha: str
    files: Mapping[str, HubBlob]
    parent: str | None
    message: str
    created_at: datetime


@dataclass
class HubRepo:
    """A repository: commits, branches and tags; `commit()` adds one on a branch."""

    repo_id: str
    repo_type: str = "model"
    gated: bool = False
    private: bool = False
    authorized_tokens: set[str] = field(default_factory=set)
    """Tokens that may read a gated or private repository."""
    commits: dict[str, HubCommit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def commit(
        self,
        files: Mapping[str, FileInput],
        *,
        branch: str = "main",
        tag: str | None = None,
        message: str = "",
        replace: bool = False,
        lfs: bool | None = None,
    ) -> str:
        """Commit `files` on `branch` (on top of its files unless `replace`); returns the sha."""
        blobs = {path: HubBlob.build(path, _as_content(v), lfs) for path, v in files.items()}
        with self._lock:
            parent = self.branches.get(branch)
            base: dict[str, HubBlob] = {}
            if parent is not None and not replace:
                base = dict(self.commits[parent].files)
            base.update(blobs)
            digest = hashlib.sha1(usedforsecurity=False)
            digest.update(f"{self.repo_type}/{self.repo_id}\n{parent}\n{message}\n".encode())
            digest.update(f"{len(self.commits)}\n".encode())
            for path in sorted(base):
                digest.update(f"{path}\0{base[path].git_oid}\n".encode())
            sha = digest.hexdigest()
            self.commits[sha] = HubCommit(sha, base, parent, message, datetime.now(UTC))
            self.branches[branch] = sha
            if tag is not None:
                self.tags[tag] = sha
            return sha

    def tag(self, name: str, revision: str) -> str:
        found = self.resolve(revision)
        if found is None:
            raise KeyError(f"unknown revision {revision!r}")
        with self._lock:
            self.tags[name] = found.sha
        return found.sha

    def resolve(self, revision: str) -> HubCommit | None:
        with self._lock:
            if revision in self.commits:
                return self.commits[revision]
            sha = self.branches.get(revision) or self.tags.get(revision)
            return self.commits.get(sha) if sha else None


# ----------------------------------------------------------------------------- log & faults


@dataclass(frozen=True)
class HubRequest:
    """One request the hub answered (the log tests assert on)."""

    method: str
    path: str
    query: str
    status: int
    range: str | None
    authorized: bool
    proxied: bool
    body_bytes: int


@dataclass
class _Fault:
    matches: Callable[[str, str], bool]
    """(method, path) -> applies?"""
    remaining: int
    cut_after: int | None = None
    status: int | None = None
    error_code: str | None = None


# ----------------------------------------------------------------------------- the hub


class FakeHub:
    """A fake Hub on 127.0.0.1; use as a context manager or call `start()`/`stop()`."""

    def __init__(self, *, page_size: int = 1000, tokens: Iterable[str] | None = None) -> None:
        self.page_size = page_size
        self.valid_tokens: set[str] | None = set(tokens) if tokens is not None else None
        """None: any token is accepted; otherwise others get 401 invalid credentials."""
        self._repos: dict[tuple[str, str], HubRepo] = {}
        self._log: list[HubRequest] = []
        self._started: list[tuple[str, str]] = []
        self._faults: list[_Fault] = []
        self._corrupt: set[str] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._rate: float | None = None
        self._gate = threading.Event()
        self._gate.set()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeHub:
        self._stopping.clear()
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open (keep-alive) connections: a stopped hub is gone."""
        self._stopping.set()
        self._gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake hub is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint to pass as `endpoint=` / HF_ENDPOINT."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ content
    def add_repo(
        self,
        repo_id: str,
        *,
        repo_type: str = "model",
        gated: bool = False,
        private: bool = False,
        authorized_tokens: Iterable[str] = (),
    ) -> HubRepo:
        repo = HubRepo(
            repo_id,
            repo_type,
            gated=gated,
            private=private,
            authorized_tokens=set(authorized_tokens),
        )
        with self._lock:
            self._repos[(repo_type, repo_id)] = repo
        return repo

    def repo(self, repo_id: str, repo_type: str = "model") -> HubRepo | None:
        with self._lock:
            return self._repos.get((repo_type, repo_id))

    def delete_repo(self, repo_id: str, repo_type: str = "model") -> None:
        with self._lock:
            self._repos.pop((repo_type, repo_id), None)

    # ------------------------------------------------------------------ faults
    def cut_next(self, path: str, *, after: int, times: int = 1) -> None:
        """The next `times` GETs of file `path` (a repo path suffix) send `after` body
        bytes, then drop the connection."""
        self._add_fault(_Fault(_file_matcher(path), times, cut_after=after))

    def fail_next(
        self,
        status: int,
        *,
        path_contains: str = "",
        method: str | None = None,
        times: int = 1,
        error_code: str | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (e.g. 503)."""

        def matches(m: str, p: str) -> bool:
            return path_contains in p and (method is None or m == method)

        self._add_fault(_Fault(matches, times, status=status, error_code=error_code))

    def corrupt(self, path: str) -> None:
        """Serve altered bytes for file `path` (headers still describe the real file)."""
        with self._lock:
            self._corrupt.add(path)

    def uncorrupt(self, path: str) -> None:
        with self._lock:
            self._corrupt.discard(path)

    def throttle(self, bytes_per_second: float | None) -> None:
        """Limit each file body to this rate (None: no limit)."""
        self._rate = bytes_per_second

    @contextlib.contextmanager
    def hold_downloads(self) -> Iterator[threading.Event]:
        """File bodies (GET resolve) wait until the yielded event is set (or the block ends)."""
        self._gate.clear()
        try:
            yield self._gate
        finally:
            self._gate.set()

    def _add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None

    # ------------------------------------------------------------------ request log
    def requests(
        self,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        status: int | None = None,
    ) -> list[HubRequest]:
        with self._lock:
            log = list(self._log)
        return [
            r
            for r in log
            if (method is None or r.method == method)
            and (path_contains is None or path_contains in r.path)
            and (status is None or r.status == status)
        ]

    def count(self, *, method: str | None = None, path_contains: str | None = None) -> int:
        return len(self.requests(method=method, path_contains=path_contains))

    def file_downloads(
        self, repo_id: str, filename: str | None = None, *, repo_type: str = "model"
    ) -> int:
        """GETs of a file body (200/206) of the repo, or of one file of it."""
        prefix = ("" if repo_type == "model" else f"/{repo_type}s") + f"/{repo_id}/resolve/"
        hits = 0
        for r in self.requests(method="GET"):
            if not r.path.startswith(prefix) or r.status not in (200, 206):
                continue
            _revision, _, path = r.path[len(prefix) :].partition("/")
            if filename is None or path == filename:
                hits += 1
        return hits

    def started(self, *, method: str | None = None, path_contains: str | None = None) -> int:
        """Requests received so far, finished or not (a held body is not in `requests()`)."""
        with self._lock:
            started = list(self._started)
        return sum(
            1
            for m, p in started
            if (method is None or m == method) and (path_contains is None or path_contains in p)
        )

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._started.clear()

    def wait_for(self, predicate: Callable[[FakeHub], bool], timeout: float = 10.0) -> bool:
        """Block (a test thread) until `predicate(hub)` holds after some request."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._changed:
                self._changed.wait(min(left, 0.05))
        return True

    def _record_start(self, method: str, path: str) -> None:
        with self._changed:
            self._started.append((method, path))
            self._changed.notify_all()

    def _record(self, request: HubRequest) -> None:
        with self._changed:
            self._log.append(request)
            self._changed.notify_all()

    def _rate_limit(self) -> float | None:
        return self._rate

    def _is_corrupt(self, path: str) -> bool:
        with self._lock:
            return path in self._corrupt


def _file_matcher(path: str) -> Callable[[str, str], bool]:
    def matches(method: str, request_path: str) -> bool:
        if method != "GET" or "/resolve/" not in request_path:
            return False
        return request_path.split("/resolve/", 1)[1].split("/", 1)[-1] == path

    return matches


# ----------------------------------------------------------------------------- HTTP


class _HubError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        commit: str | None = None,
        error_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.commit = commit
        self.error_message = error_message or message


_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_API_VERBS = ("revision", "tree", "paths-info", "refs")


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1"

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # Quiet: tests read the request log, not stderr.
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    # ------------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        proxied = self.path.startswith(("http://", "https://"))
        target = urlsplit(self.path)
        raw_path, query = target.path, target.query
        path = unquote(raw_path)
        self._status = 0
        self._body_bytes = 0
        authorized = False
        self.hub._record_start(method, path)
        try:
            fault = self.hub._take_fault(method, path)
            if fault is not None and fault.status is not None:
                raise _HubError(fault.status, f"injected {fault.status}", code=fault.error_code)
            token = self._token()
            authorized = token is not None
            if token is not None and not self._token_valid(token):
                raise _HubError(
                    401,
                    "Invalid credentials in Authorization header",
                    error_message="Invalid credentials in Authorization header",
                )
            self._route(method, raw_path, query, token, fault)
        except _HubError as exc:
            self._send_error(method, exc)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.hub._record(
                HubRequest(
                    method=method,
                    path=path,
                    query=query,
                    status=self._status,
                    range=self.headers.get("Range"),
                    authorized=authorized,
                    proxied=proxied,
                    body_bytes=self._body_bytes,
                )
            )

    def _token(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip() or None
        return None

    def _token_valid(self, token: str) -> bool:
        valid = self.hub.valid_tokens
        return valid is None or token in valid

    def _send_json(self, method: str, payload: object, headers: Mapping[str, str] = {}) -> None:
        body = json.dumps(payload).encode()
        self._status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method == "GET":
            self.wfile.write(body)
            self._body_bytes = len(body)

    def _send_error(self, method: str, exc: _HubError) -> None:
        body = json.dumps({"error": str(exc)}).encode()
        self._status = exc.status
        self.send_response(exc.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if exc.code:
            self.send_header("X-Error-Code", exc.code)
        self.send_header("X-Error-Message", exc.error_message)
        if exc.commit:
            self.send_header("X-Repo-Commit", exc.commit)
        self.end_headers()
        if method == "GET":
            self.wfile.write(body)

    # ------------------------------------------------------------------ routing
    def _route(
        self, method: str, raw_path: str, query: str, token: str | None, fault: _Fault | None
    ) -> None:
        segments = [unquote(s) for s in raw_path.strip("/").split("/")]
        if segments == ["api", "whoami-v2"]:
            if token is None:
                raise _HubError(401, "Invalid credentials in Authorization header")
            self._send_json(method, {"type": "user", "name": "fake-user", "auth": {}})
            return
        if len(segments) >= 3 and segments[0] == "api" and segments[1] in _REPO_TYPES:
            self._api(method, _REPO_TYPES[segments[1]], segments[2:], raw_path, query, token)
            return
        repo_type = "model"
        if segments and segments[0] in ("datasets", "spaces"):
            repo_type = _REPO_TYPES[segments[0]]
            segments = segments[1:]
        if "resolve" in segments:
            at = segments.index("resolve")
            repo_id = "/".join(segments[:at])
            rest = segments[at + 1 :]
            if len(rest) >= 2:
                self._resolve(method, repo_type, repo_id, rest[0], "/".join(rest[1:]), token, fault)
                return
        raise _HubError(404, "not found")

    def _split_api(self, rest: list[str]) -> tuple[str, str | None, list[str]]:
        """repo id, verb and the verb's arguments of `/api/<type>s/<rest>`."""
        if len(rest) >= 3 and rest[2] in _API_VERBS:
            return "/".join(rest[:2]), rest[2], rest[3:]
        if len(rest) >= 2 and rest[1] in _API_VERBS:
            return rest[0], rest[1], rest[2:]
        return "/".join(rest), None, []

    def _repo_for(self, repo_type: str, repo_id: str, token: str | None) -> HubRepo:
        repo = self.hub.repo(repo_id, repo_type)
        if repo is None:
            raise _HubError(404, f"Repository {repo_id} not found", code="RepoNotFound")
        allowed = token is not None and token in repo.authorized_tokens
        if repo.private and not allowed:
            raise _HubError(401, f"Repository {repo_id} not found", code="RepoNotFound")
        if repo.gated and not allowed:
            status = 401 if token is None else 403
            raise _HubError(status, f"Access to {repo_id} is restricted", code="GatedRepo")
        return repo

    def _commit_for(self, repo: HubRepo, revision: str) -> HubCommit:
        found = repo.resolve(revision)
        if found is None:
            raise _HubError(404, f"Revision {revision} not found", code="RevisionNotFound")
        return found

    def _api(
        self,
        method: str,
        repo_type: str,
        rest: list[str],
        raw_path: str,
        query: str,
        token: str | None,
    ) -> None:
        repo_id, verb, args = self._split_api(rest)
        repo = self._repo_for(repo_type, repo_id, token)
        if verb is None or verb == "revision":
            commit = self._commit_for(repo, args[0] if args else "main")
            self._send_json(method, _repo_info(repo, commit))
            return
        if verb == "tree" and args:
            commit = self._commit_for(repo, args[0])
            self._tree(method, commit, "/".join(args[1:]), raw_path, query)
            return
        raise _HubError(404, f"unsupported API {verb}")

    def _tree(self, method: str, commit: HubCommit, base: str, raw_path: str, query: str) -> None:
        params = parse_qs(query)
        recursive = params.get("recursive", ["false"])[0].lower() == "true"
        cursor = int(params.get("cursor", ["0"])[0] or 0)
        entries = _tree_entries(commit, base.strip("/"), recursive)
        if base and not entries:
            raise _HubError(404, f"{base} not found", code="EntryNotFound", commit=commit.sha)
        page = entries[cursor : cursor + self.hub.page_size]
        headers: dict[str, str] = {}
        after = cursor + len(page)
        if after < len(entries):
            kept = [f"{k}={quote(v[0])}" for k, v in params.items() if k != "cursor"]
            next_query = "&".join([*kept, f"cursor={after}"])
            host = self.headers.get("Host", f"127.0.0.1:{self.hub.port}")
            headers["Link"] = f'<http://{host}{raw_path}?{next_query}>; rel="next"'
        self._send_json(method, page, headers)

    def _resolve(
        self,
        method: str,
        repo_type: str,
        repo_id: str,
        revision: str,
        path: str,
        token: str | None,
        fault: _Fault | None,
    ) -> None:
        repo = self._repo_for(repo_type, repo_id, token)
        commit = self._commit_for(repo, revision)
        blob = commit.files.get(path)
        if blob is None:
            raise _HubError(404, f"{path} not found", code="EntryNotFound", commit=commit.sha)
        start, end = 0, blob.size - 1
        status = 200
        requested = self.headers.get("Range")
        if requested and requested.startswith("bytes="):
            first, _, last = requested[6:].partition("-")
            start = int(first) if first else 0
            end = min(int(last), blob.size - 1) if last else blob.size - 1
            if start >= blob.size:
                self._status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{blob.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = max(0, end - start + 1)
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", f'"{blob.etag}"')
        self.send_header("X-Repo-Commit", commit.sha)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{blob.size}")
        self.end_headers()
        if method == "HEAD":
            return
        self.hub._gate.wait()
        self._send_body(blob, start, length, path, fault)

    def _send_body(
        self, blob: HubBlob, start: int, length: int, path: str, fault: _Fault | None
    ) -> None:
        cut = fault.cut_after if fault is not None else None
        corrupt = self.hub._is_corrupt(path)
        sent = 0
        began = time.monotonic()
        while sent < length:
            take = min(_BODY_CHUNK, length - sent)
            if cut is not None:
                take = min(take, cut - sent)
                if take <= 0:
                    break
            data = blob.content.read(start + sent, take)
            if corrupt and sent == 0 and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.wfile.write(data)
            sent += len(data)
            self._body_bytes = sent
            rate = self.hub._rate_limit()
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    # A server thread, not an event loop: waiting here is the throttle.
                    self.hub._stopping.wait(ahead)
        if cut is not None and sent < length:
            # Drop the connection mid-body: the client sees an incomplete response.
            self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


def _repo_info(repo: HubRepo, commit: HubCommit) -> dict[str, object]:
    return {
        "_id": hashlib.sha1(repo.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
        "id": repo.repo_id,
        "sha": commit.sha,
        "private": repo.private,
        "gated": "manual" if repo.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "lastModified": commit.created_at.isoformat().replace("+00:00", "Z"),
        "createdAt": commit.created_at.isoformat().replace("+00:00", "Z"),
        "siblings": [{"rfilename": p} for p in sorted(commit.files)],
    }


def _tree_entries(commit: HubCommit, base: str, recursive: bool) -> list[dict[str, object]]:
    prefix = f"{base}/" if base else ""
    files: list[dict[str, object]] = []
    directories: set[str] = set()
    for path in sorted(commit.files):
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix) :]
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            directory = prefix + "/".join(parts[:depth])
            if recursive or depth == 1:
                directories.add(directory)
        if len(parts) > 1 and not recursive:
            continue
        blob = commit.files[path]
        entry: dict[str, object] = {
            "type": "file",
            "oid": blob.git_oid,
            "size": blob.size,
            "path": path,
        }
        if blob.sha256 is not None:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        files.append(entry)
    dirs: list[dict[str, object]] = [
        {
            "type": "directory",
            "oid": hashlib.sha1(f"{commit.sha}/{d}".encode(), usedforsecurity=False).hexdigest(),
            "size": 0,
            "path": d,
        }
        for d in sorted(directories)
    ]
    return dirs + files
