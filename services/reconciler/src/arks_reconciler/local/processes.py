"""Replica processes on this machine: starting, identifying, signalling, finding.

Each replica runs in its own session and process group (`start_new_session`), so it
survives the reconciler (a crash or a restart) and a whole engine (vLLM's workers
included) is signalled at once through its group. A process is identified by
(pid, start time in clock ticks since boot, boot id): a pid alone may be reused after
the process dies, the triple cannot. Every replica also carries two environment
variables, `ARKS_REPLICA_NAME` and `ARKS_REPLICA_SCOPE` (a hash of the reconciler's data
directory), so that after a crash the reconciler can find processes it started but had
not recorded yet, and never touches processes of another data directory.

Everything here reads /proc (Linux); the blocking reads are small and run in a thread
when called from the event loop (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

REPLICA_NAME_ENV = "ARKS_REPLICA_NAME"
REPLICA_SCOPE_ENV = "ARKS_REPLICA_SCOPE"

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_ticks: int
    boot_id: str


def scope_of(data_dir: Path) -> str:
    """The marker of replicas started for one data directory."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def boot_id() -> str:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in ticks) of a process, None if there is none."""
    try:
        data = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    fields = data[data.rindex(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def identify(pid: int) -> ProcessIdentity | None:
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return ProcessIdentity(pid, stat[1], boot_id())


def alive(identity: ProcessIdentity) -> bool:
    """True while that very process runs (not a zombie, not a reused pid)."""
    stat = _stat(identity.pid)
    if stat is None or stat[0] in ("Z", "X") or stat[1] != identity.start_ticks:
        return False
    return identity.boot_id == boot_id()


def environ(pid: int) -> dict[str, str] | None:
    try:
        raw = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def is_replica(identity: ProcessIdentity, name: str, scope: str) -> bool:
    """The process is alive and carries the markers of replica `name` of `scope`."""
    if not alive(identity):
        return False
    env = environ(identity.pid) or {}
    return env.get(REPLICA_NAME_ENV) == name and env.get(REPLICA_SCOPE_ENV) == scope


def find_marked(scope: str) -> dict[int, str]:
    """pid → replica name of every live process carrying `scope`'s markers."""
    found: dict[int, str] = {}
    own = os.getpid()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        env = environ(int(entry.name))
        if (
            env
            and env.get(REPLICA_SCOPE_ENV) == scope
            and REPLICA_NAME_ENV in env
            and identify(int(entry.name)) is not None
        ):
            found[int(entry.name)] = env[REPLICA_NAME_ENV]
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def signal_group(identity: ProcessIdentity, sig: signal.Signals) -> bool:
    """Signal the process group led by `identity` if that process still runs."""
    if not alive(identity):
        return False
    try:
        os.killpg(identity.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def terminate(identity: ProcessIdentity, grace: float) -> None:
    """SIGTERM the replica's group, SIGKILL it after `grace` seconds; returns once it is gone."""
    if not await asyncio.to_thread(signal_group, identity, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not await asyncio.to_thread(alive, identity):
            break
        await asyncio.sleep(0.05)
    # Kill whatever is left of the group too (engine worker processes).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(identity.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not await asyncio.to_thread(alive, identity):
            break
        await asyncio.sleep(0.05)


def tail(path: Path, limit: int = 4096) -> str:
    """The last non-empty line of a log file ('' if none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - limit, 0))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
