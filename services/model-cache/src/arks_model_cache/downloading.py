"""The only module that talks to a Hub, through huggingface_hub (blocking; run it in a
worker thread).

- `resolve_commit()` asks the Hub which commit a revision names (one request). It also
  proves the caller may read the repo, so a gated or private model that is already
  cached is never handed to a token that cannot read it. When the Hub is unreachable,
  or in offline mode, the answer comes from the cache's `refs/`.
- `fetch_snapshot()` runs `snapshot_download` for that commit into the cache: missing
  files are fetched (huggingface_hub resumes a cut transfer after its first 10 MiB
  chunk), present ones are not, and progress goes to a `ProgressTracker`.
- `snapshot_files()` lists the requested files as they are on disk, for verification.
- `classify()` turns every exception huggingface_hub and httpx2 raise into a
  `DownloadFailure` with a kind, a message naming what to fix, and a retry verdict.

The endpoint is always passed explicitly (huggingface_hub reads HF_ENDPOINT once, at
import). Telemetry is switched off at import: with it on, huggingface_hub fetches an
"agent harness" registry from huggingface.co whatever endpoint is configured.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx2
from huggingface_hub import (
    HfApi,
    constants,
    get_cached_repo_tree,
    set_client_factory,
    snapshot_download,
)
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    DisabledRepoError,
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

# Public, but exported lazily, which mypy cannot see.
from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

from arks_common.events import ModelCacheErrorKind
from arks_model_cache.failures import DownloadCancelled, DownloadFailure
from arks_model_cache.layout import CacheLayout
from arks_model_cache.specs import HubAccess, ModelSpec
from arks_model_cache.storing import write_atomic
from arks_model_cache.tracking import ProgressTracker, bar_class
from arks_model_cache.verifying import SnapshotFile

log = logging.getLogger(__name__)

constants.HF_HUB_DISABLE_TELEMETRY = True

_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


def default_endpoint() -> str:
    """HF_ENDPOINT as huggingface_hub read it at import, else the public Hub."""
    return str(constants.ENDPOINT)


def offline_by_environment() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub read it."""
    return bool(constants.is_offline_mode())


def configure_http(proxy: str | None) -> None:
    """Send Hub traffic through `proxy` (process-wide; None keeps httpx's *_PROXY lookup)."""
    if proxy is None:
        return
    # huggingface_hub's offline check and request ids live in this hook; keep it.
    from huggingface_hub.utils._http import hf_request_event_hook

    def client() -> httpx2.Client:
        return httpx2.Client(
            event_hooks={"request": [hf_request_event_hook]},
            follow_redirects=True,
            timeout=None,
            proxy=proxy,
        )

    set_client_factory(client)


# ----------------------------------------------------------------------------- revisions


@dataclass(frozen=True)
class Resolution:
    commit: str
    source: Literal["hub", "request", "cache"]
    """hub: the Hub answered; request: the revision is a commit (access not checked);
    cache: offline or the Hub unreachable, so the cache's refs answered and only
    cached files may be used."""


def read_ref(layout: CacheLayout, spec: ModelSpec) -> str | None:
    if spec.revision_is_commit:
        return spec.revision
    try:
        value = layout.ref_file(spec.repo_type, spec.repo_id, spec.revision).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return value or None


def _write_ref(layout: CacheLayout, spec: ModelSpec, commit: str) -> None:
    path = layout.ref_file(spec.repo_type, spec.repo_id, spec.revision)
    try:
        if path.read_text().strip() == commit:
            return
    except OSError:
        pass
    write_atomic(path, commit.encode())


def resolve_commit(spec: ModelSpec, access: HubAccess, layout: CacheLayout) -> Resolution:
    """The commit `spec.revision` names, checking on the way that the caller may read it."""
    if access.offline or offline_by_environment():
        cached = read_ref(layout, spec)
        if cached is None:
            raise DownloadFailure(
                ModelCacheErrorKind.NETWORK,
                f"offline mode: revision {spec.revision!r} of {spec.repo_id} is not in the "
                f"cache at {layout.root}",
                retryable=False,
            )
        return Resolution(cached, "cache")
    if spec.revision_is_commit and not access.check_access:
        return Resolution(spec.revision, "request")
    api = HfApi(endpoint=access.endpoint, token=access.token)
    try:
        info = api.repo_info(
            spec.repo_id,
            repo_type=spec.repo_type,
            revision=spec.revision,
            timeout=access.etag_timeout,
        )
    except Exception as exc:
        failure = classify(exc, spec, access)
        cached = read_ref(layout, spec)
        if failure.kind == ModelCacheErrorKind.NETWORK and cached is not None:
            log.warning(
                "hub unreachable (%s); using the cached commit %s of %s",
                failure.message,
                cached,
                spec.describe(),
            )
            return Resolution(cached, "cache")
        raise failure from exc
    commit = info.sha
    if not commit:
        raise DownloadFailure(
            ModelCacheErrorKind.OTHER,
            f"{access.endpoint} returned no commit for {spec.describe()}",
            retryable=False,
        )
    if not spec.revision_is_commit:
        _write_ref(layout, spec, commit)
    return Resolution(commit, "hub")


# ----------------------------------------------------------------------------- files


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int | None
    """From the tree listing; None when only the snapshot directory could be read."""


def planned_files(spec: ModelSpec, commit: str, layout: CacheLayout) -> list[PlannedFile]:
    """The files the request wants, from the cached tree listing (or the snapshot dir)."""
    try:
        tree = get_cached_repo_tree(
            spec.repo_id, repo_type=spec.repo_type, revision=commit, cache_dir=layout.hub_dir
        )
        listed = [PlannedFile(f.path, int(f.size)) for f in tree]
    except CachedRepoTreeNotFoundError:
        snapshot = layout.snapshot_dir(spec.repo_type, spec.repo_id, commit)
        listed = [
            PlannedFile(p.relative_to(snapshot).as_posix(), None)
            for p in sorted(snapshot.rglob("*"))
            if not p.is_dir()
        ]
    return list(
        filter_repo_objects(
            listed,
            allow_patterns=list(spec.allow_patterns) if spec.allow_patterns is not None else None,
            ignore_patterns=list(spec.ignore_patterns)
            if spec.ignore_patterns is not None
            else None,
            key=lambda f: f.path,
        )
    )


def snapshot_files(spec: ModelSpec, commit: str, layout: CacheLayout) -> list[SnapshotFile]:
    """The requested files as they are on disk; a missing one is a retryable failure."""
    snapshot = layout.snapshot_dir(spec.repo_type, spec.repo_id, commit)
    files: list[SnapshotFile] = []
    missing: list[str] = []
    for planned in planned_files(spec, commit, layout):
        pointer = snapshot / planned.path
        if not pointer.exists():
            missing.append(planned.path)
            continue
        blob = pointer.resolve() if pointer.is_symlink() else pointer
        files.append(
            SnapshotFile(
                path=planned.path,
                pointer=pointer,
                blob=blob,
                etag=blob.name if blob != pointer else "",
                size=blob.stat().st_size,
                expected_size=planned.size,
            )
        )
    if missing:
        sample = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise DownloadFailure(
            ModelCacheErrorKind.NETWORK,
            f"snapshot {commit} of {spec.repo_id} is incomplete: {sample} missing",
            retryable=True,
        )
    return files


def _track_listing(
    spec: ModelSpec, commit: str, layout: CacheLayout, tracker: ProgressTracker
) -> int:
    """Give the tracker its totals; returns the bytes still to transfer."""
    snapshot = layout.snapshot_dir(spec.repo_type, spec.repo_id, commit)
    planned = planned_files(spec, commit, layout)
    cached = [p for p in planned if (snapshot / p.path).exists()]
    total = sum(p.size or 0 for p in planned)
    done = sum(p.size or 0 for p in cached)
    tracker.begin(
        files_total=len(planned), bytes_total=total, files_cached=len(cached), bytes_cached=done
    )
    return total - done if len(cached) < len(planned) else 0


def fetch_snapshot(
    spec: ModelSpec,
    commit: str,
    access: HubAccess,
    layout: CacheLayout,
    tracker: ProgressTracker,
    *,
    local_only: bool,
    before_transfer: Callable[[int], None] | None = None,
) -> Path:
    """Make every requested file of `commit` present in the cache; returns the snapshot dir.

    `before_transfer(missing_bytes)` runs in this thread once the listing is known and
    before any byte moves, unless everything is cached already (it may block, e.g. for
    a transfer slot, or raise `DownloadCancelled`).
    """

    def on_listing() -> None:
        missing: int | None = None
        try:
            missing = _track_listing(spec, commit, layout, tracker)
        except (OSError, CachedRepoTreeNotFoundError) as exc:
            log.debug("no totals for %s: %s", spec.describe(), exc)
        if before_transfer is not None and not local_only and (missing is None or missing > 0):
            before_transfer(missing or 0)

    tracker.expect_listing(on_listing)
    try:
        path = snapshot_download(
            spec.repo_id,
            repo_type=spec.repo_type,
            revision=commit,
            cache_dir=layout.hub_dir,
            allow_patterns=list(spec.allow_patterns) if spec.allow_patterns is not None else None,
            ignore_patterns=list(spec.ignore_patterns)
            if spec.ignore_patterns is not None
            else None,
            token=access.token,
            endpoint=access.endpoint,
            local_files_only=local_only,
            etag_timeout=access.etag_timeout,
            max_workers=access.file_workers,
            tqdm_class=bar_class(tracker),
        )
    except DownloadCancelled:
        raise
    except Exception as exc:
        raise classify(exc, spec, access) from exc
    return Path(path)


# ----------------------------------------------------------------------------- errors


def classify(exc: BaseException, spec: ModelSpec, access: HubAccess) -> DownloadFailure:
    """What went wrong, for an operator, and whether retrying later can help."""
    if isinstance(exc, DownloadFailure):
        return exc
    where = f"{spec.repo_id} on {access.endpoint}"
    given = access.token is not None
    kind = ModelCacheErrorKind
    if isinstance(exc, GatedRepoError):
        return DownloadFailure(
            kind.GATED,
            f"{where} is gated and "
            + ("the token used has not been granted access" if given else "no token was given")
            + ": accept its conditions on the Hub with an account, then use that account's token",
            retryable=False,
        )
    if isinstance(exc, RevisionNotFoundError):
        return DownloadFailure(
            kind.REVISION_NOT_FOUND,
            f"revision {spec.revision!r} does not exist in {where}",
            retryable=False,
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return DownloadFailure(
            kind.NOT_FOUND,
            f"a file of {spec.describe()} is listed but not served by {access.endpoint}: {exc}",
            retryable=False,
        )
    if isinstance(exc, (RepositoryNotFoundError, DisabledRepoError)):
        return DownloadFailure(
            kind.NOT_FOUND,
            f"repository {where} does not exist, is disabled, or is private "
            + ("and the token used cannot read it" if given else "(no token was given)"),
            retryable=False,
        )
    if isinstance(exc, OfflineModeIsEnabled) or (
        isinstance(exc, LocalEntryNotFoundError) and (access.offline or offline_by_environment())
    ):
        return DownloadFailure(
            kind.NETWORK,
            f"offline mode: {spec.describe()} is not (completely) in the cache",
            retryable=False,
        )
    if isinstance(exc, LocalEntryNotFoundError):
        return DownloadFailure(
            kind.NETWORK,
            f"cannot reach {access.endpoint} and {spec.describe()} is not completely cached: "
            f"{_first_line(exc)}",
            retryable=True,
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status == 401:
            return DownloadFailure(
                kind.UNAUTHORIZED,
                f"{access.endpoint} rejected the token (HTTP 401, invalid credentials): "
                "check HF_TOKEN or the model's token secret",
                retryable=False,
            )
        if status == 403:
            return DownloadFailure(
                kind.UNAUTHORIZED,
                f"reading {where} is forbidden (HTTP 403) "
                + ("for the token used" if given else "without a token"),
                retryable=False,
            )
        if status in _TRANSIENT_STATUS:
            return DownloadFailure(
                kind.NETWORK,
                f"{access.endpoint} answered HTTP {status} for {spec.describe()}",
                retryable=True,
            )
        return DownloadFailure(
            kind.OTHER,
            f"{access.endpoint} answered HTTP {status} for {spec.describe()}: {_first_line(exc)}",
            retryable=False,
        )
    if isinstance(exc, httpx2.TransportError):
        return DownloadFailure(
            kind.NETWORK,
            f"network error talking to {access.endpoint}: {type(exc).__name__}: {exc}",
            retryable=True,
        )
    if isinstance(exc, FileMetadataError):
        return DownloadFailure(
            kind.OTHER,
            f"{access.endpoint} does not answer like a Hugging Face Hub: {_first_line(exc)}",
            retryable=False,
        )
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DownloadFailure(
                kind.DISK_FULL,
                f"no space left for {spec.describe()} in the model cache: {exc}",
                retryable=True,
            )
        if "Consistency check failed" in str(exc):
            return DownloadFailure(
                kind.NETWORK,
                f"a transfer of {spec.describe()} ended short: {_first_line(exc)}",
                retryable=True,
            )
        return DownloadFailure(
            kind.OTHER,
            f"file system error caching {spec.describe()}: {exc}",
            retryable=False,
        )
    if isinstance(exc, ValueError):
        return DownloadFailure(
            kind.OTHER, f"invalid request {spec.describe()}: {_first_line(exc)}", retryable=False
        )
    return DownloadFailure(
        kind.OTHER,
        f"unexpected error caching {spec.describe()}: {type(exc).__name__}: {exc}",
        retryable=False,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
