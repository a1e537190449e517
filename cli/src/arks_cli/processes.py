"""Process bookkeeping for the launcher: identities, signals, sweeps, the subreaper.

A pid alone is not an identity (pids are recycled), so records carry psutil's
`create_time` and every signal goes through `alive()`/`signal_record()`, which check
it first. `become_subreaper()` makes orphaned descendants (say, an engine replica whose
reconciler died) re-parent to `arks up` instead of init, so the final sweep still finds
them; `reap_adopted()` collects the ones that exited in the meantime.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Iterable

import psutil

from arks_cli.stack_state import ProcessRecord

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); False where the platform cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def record_of(
    name: str, pid: int, *, log: str | None = None, ready_url: str | None = None
) -> ProcessRecord:
    """A record of a running process (its pgid and create time read now)."""
    pgid: int | None
    try:
        pgid = os.getpgid(pid)
    except OSError:
        pgid = None
    try:
        created: float | None = psutil.Process(pid).create_time()
    except psutil.Error:
        created = None
    return ProcessRecord(
        name=name, pid=pid, pgid=pgid, create_time=created, log=log, ready_url=ready_url
    )


def _process(record: ProcessRecord) -> psutil.Process | None:
    try:
        proc = psutil.Process(record.pid)
        if record.create_time is not None and abs(proc.create_time() - record.create_time) > 0.01:
            return None  # the pid now belongs to someone else
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def alive(record: ProcessRecord) -> bool:
    """True when the recorded process (not a recycled pid) still runs."""
    return _process(record) is not None


def signal_record(record: ProcessRecord, sig: signal.Signals, *, group: bool) -> bool:
    """Signal the recorded process (and its process group when asked); False if gone."""
    proc = _process(record)
    if proc is None:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and record.pgid is not None and record.pgid == record.pid:
            os.killpg(record.pgid, sig)
        else:
            proc.send_signal(sig)
        return True
    return False


def descendants(exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Every live process below this one, except the given pids."""
    skip = set(exclude)
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        if child.pid in skip:
            continue
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found


def reap_adopted(own: Iterable[int], seen_before: set[int]) -> set[int]:
    """Collect exited processes we adopted as subreaper; returns the zombies seen now.

    A zombie is reaped only when it was already a zombie at the previous call: our own
    children's exits are collected by asyncio's child watcher at once, so a zombie that
    lingers is an adopted orphan nobody else waits for (and reaping a child of ours would
    steal its exit status).
    """
    mine = set(own)
    zombies: set[int] = set()
    try:
        children = psutil.Process().children(recursive=False)
    except psutil.Error:
        return zombies
    for child in children:
        if child.pid in mine:
            continue
        with contextlib.suppress(psutil.Error):
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.add(child.pid)
    for pid in zombies & seen_before:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    return zombies - seen_before


def terminate_all(processes: list[psutil.Process], grace: float) -> list[psutil.Process]:
    """SIGTERM, wait up to `grace` seconds, SIGKILL the rest; returns the killed ones."""
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, remaining = psutil.wait_procs(processes, timeout=grace)
    for proc in remaining:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(remaining, timeout=2.0)
    return list(remaining)


def launching_ancestors() -> list[ProcessRecord]:
    """The wrappers that started us (`make` → `uv run` → `arks up`), to notice their death.

    A SIGTERM sent to `make` alone kills make but not what it runs: `arks up` would live
    on with nobody to stop it. So `arks up` watches its ancestors and stops when one
    goes. It watches the chain upwards until init, or until a session leader that owns
    a terminal (an interactive shell: if that goes, the terminal hangs up and SIGHUP
    arrives anyway). Nothing is watched when SIGHUP is ignored (`nohup arks up &`: the
    user wants it to outlive its starter).
    """
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return []
    found: list[ProcessRecord] = []
    try:
        proc = psutil.Process().parent()
        while proc is not None and proc.pid > 1:
            if proc.pid == os.getsid(proc.pid) and proc.terminal() is not None:
                break
            found.append(
                ProcessRecord(name=proc.name(), pid=proc.pid, create_time=proc.create_time())
            )
            proc = proc.parent()
    except (psutil.Error, OSError):
        pass
    return found
