"""A write-ahead copy of the usage events a router holds in memory, so a SIGKILL loses none.

Between `UsagePublisher.record()` and the stream's ack (or the fsynced spool append) an
event lives in the publisher's memory for a few milliseconds, longer while NATS is slow.
Each event is first appended to a journal segment of the process's spool slot:

    usage-<slot>.journal-<k>    `<subject> <event JSON>\\n` records, append-only

The append is a plain `write()` into the page cache, without fsync: it survives the
process (SIGKILL, OOM kill, a crash), not the machine; once the event is acked or spooled
(which fsyncs) its record is no longer needed. Segments rotate every `rotate_seconds`
(or `rotate_bytes`); a segment whose events are all resolved is deleted, and the current
one is emptied whenever nothing in it is outstanding, so the journal stays small.

Open streams also leave *progress records* here (`write_progress()`, see
`arks_router.progress`): each one replaces the stream's previous one, and the last one
is kept (its segment stays) until the request's final event has been journaled
(`drop_progress()`), so a crash leaves either the final event or the latest progress.

When a process takes a slot, segments left in it by a dead process are handed over once
(`open()` returns their records): the publisher appends them to the spool, which replays
them in order. Some of them may have been published already; JetStream drops those as
duplicates (their `Nats-Msg-Id` is the request id) and the accountant applies each
request id once, so the usage arrives exactly once.

The write happens on the event loop on purpose: the point is that the record exists
before the request's usage can be lost; it is one small page-cache append (microseconds).
Failure modes: a write that fails (disk full, read-only) is logged once per segment and
counted; the event is still published from memory as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path

from arks_router.spooling import decode_record, encode_record

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^usage-(?P<slot>\d+)\.journal-(?P<k>\d+)$")


class Journal:
    def __init__(
        self, directory: Path, *, rotate_seconds: float = 1.0, rotate_bytes: int = 4 << 20
    ) -> None:
        self.directory = directory
        self._rotate_seconds = rotate_seconds
        self._rotate_bytes = rotate_bytes
        self._slot: int | None = None
        self._fd: int | None = None
        self._current = 0
        self._opened_at = 0.0
        self._size = 0
        self._outstanding: dict[int, int] = {}
        self._progress: dict[str, int] = {}
        """Open request -> the segment holding its latest progress record."""
        self._leftovers: list[Path] = []
        self._failing = False
        self.failures = 0
        """Events that could not be journaled (published from memory only)."""

    # ------------------------------------------------------------------ lifecycle
    def open(self, slot: int) -> list[tuple[str, bytes]]:
        """Take over slot `slot` (its spool lock is held by the caller): the records of
        the segments a previous process left there, oldest first. Call
        `discard_leftovers()` once they are stored elsewhere."""
        self._slot = slot
        found: list[tuple[int, Path]] = []
        for path in self.directory.glob(f"usage-{slot}.journal-*"):
            m = _SEGMENT.match(path.name)
            if m is not None and int(m["slot"]) == slot:
                found.append((int(m["k"]), path))
        found.sort()
        self._leftovers = [path for _, path in found]
        self._current = found[-1][0] if found else 0
        records: list[tuple[str, bytes]] = []
        for _, path in found:
            records.extend(_read_records(path))
        if records:
            log.warning(
                "usage journal of slot %s: %d events left by a process that did not stop "
                "cleanly; they go to the spool (duplicates are dropped)",
                slot,
                len(records),
            )
        return records

    def discard_leftovers(self) -> None:
        for path in self._leftovers:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._leftovers = []

    def close(self) -> None:
        """Close the current segment; delete it if nothing in it is outstanding."""
        self._close_current()

    # ------------------------------------------------------------------ events
    def write(self, subject: str, data: bytes) -> int | None:
        """Append one event; the segment to pass to `done()`, None if it failed."""
        if self._slot is None:
            return None
        now = time.monotonic()
        if (
            self._fd is None
            or now - self._opened_at > self._rotate_seconds
            or self._size > self._rotate_bytes
        ) and not self._rotate(now):
            return None
        assert self._fd is not None
        line = encode_record(subject, data)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._failed(exc)
            return None
        self._size += len(line)
        segment = self._current
        self._outstanding[segment] = self._outstanding.get(segment, 0) + 1
        return segment

    def write_progress(self, key: str, subject: str, data: bytes) -> bool:
        """Append a progress record of open request `key`, superseding its previous one
        (whose segment may then go). False if it could not be written."""
        segment = self.write(subject, data)
        if segment is None:
            return False
        self.done(self._progress.get(key))
        self._progress[key] = segment
        return True

    def drop_progress(self, key: str) -> None:
        """Request `key` is over (its final event is journaled): its progress may go."""
        self.done(self._progress.pop(key, None))

    def done(self, segment: int | None, count: int = 1) -> None:
        """`count` events of `segment` are acked or spooled: their records may go."""
        if segment is None:
            return
        left = self._outstanding.get(segment, 0) - count
        if left > 0:
            self._outstanding[segment] = left
            return
        self._outstanding.pop(segment, None)
        if segment != self._current or self._fd is None:
            self._unlink(segment)
        elif self._size:
            try:
                os.ftruncate(self._fd, 0)  # O_APPEND: the next record starts at 0
                self._size = 0
            except OSError as exc:
                self._failed(exc)

    # ------------------------------------------------------------------ internals
    def _close_current(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if not self._outstanding.get(self._current):
                self._outstanding.pop(self._current, None)
                self._unlink(self._current)

    def _rotate(self, now: float) -> bool:
        self._close_current()
        self._current += 1
        path = self._path(self._current)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._failed(exc)
            return False
        self._opened_at, self._size, self._failing = now, 0, False
        return True

    def _failed(self, exc: OSError) -> None:
        self.failures += 1
        if not self._failing:
            self._failing = True
            log.error(
                "cannot write the usage journal in %s (%s): a router crash now could lose "
                "the usage held in memory",
                self.directory,
                exc,
            )

    def _path(self, segment: int) -> Path:
        return self.directory / f"usage-{self._slot}.journal-{segment}"

    def _unlink(self, segment: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(segment).unlink()


def _read_records(path: Path) -> list[tuple[str, bytes]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    # the last piece is empty, or a record torn by the kill
    return [r for line in raw.split(b"\n")[:-1] if (r := decode_record(line)) is not None]
