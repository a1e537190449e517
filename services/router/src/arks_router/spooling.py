"""A durable local spool of usage events, replayed in order when NATS is back.

Layout under `usage.spool_dir`, one *slot* per router process:

    usage-<n>.lock     held with flock() while a process owns slot n
    usage-<n>.spool    append-only records: `<subject> <event JSON>\\n`
    usage-<n>.cursor   byte offset of the first record not yet acknowledged

A process takes the lowest free slot, so several routers may share a directory and a
restarted router picks up a spool left behind (its own or a dead sibling's). Every
append is fsynced before it returns. The cursor is written (atomically, by rename)
after records are acknowledged; a crash between the two replays a few records again,
which JetStream drops as duplicates (their `Nats-Msg-Id` is the request id) and the
accountant would ignore anyway (it applies each request id once). When the cursor
reaches the end, the file is truncated and the cursor reset.

A record torn by a crash mid-append (no trailing newline) is cut off at open: it was
never acknowledged to anyone. All methods are blocking file I/O: call them through
`asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from arks_common.errors import PermanentError

log = logging.getLogger(__name__)

MAX_SLOTS = 256
_TAIL_PROBE = 1 << 16


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    subject: str
    data: bytes
    end: int
    """Offset just past this record: the cursor once it is acknowledged."""


def encode_record(subject: str, data: bytes) -> bytes:
    """One record line, `<subject> <event JSON>\n` (the spool's and the journal's format)."""
    return subject.encode() + b" " + data.replace(b"\n", b" ") + b"\n"


def decode_record(line: bytes) -> tuple[str, bytes] | None:
    """(subject, event JSON) of a record line, None if it is malformed."""
    subject, _, data = line.rstrip(b"\n").partition(b" ")
    if not subject or not data:
        return None
    return subject.decode(errors="replace"), data


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.slot: int | None = None
        self._lock: IO[bytes] | None = None
        self._file: IO[bytes] | None = None
        self._cursor = 0
        self._size = 0

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for slot in range(MAX_SLOTS):
            lock = (self.directory / f"usage-{slot}.lock").open("ab")
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self.slot, self._lock = slot, lock
            break
        else:
            raise PermanentError(f"all {MAX_SLOTS} spool slots in {self.directory} are taken")
        self._file = self._path("spool").open("a+b")
        self._size = self._recover_tail()
        self._cursor = self._read_cursor()
        if self._cursor > self._size:
            # Crashed after truncating the spool but before resetting the cursor.
            self._cursor = 0
            self._write_cursor(0)
        if self.pending_bytes:
            log.info("usage spool slot %s holds %d bytes to replay", self.slot, self.pending_bytes)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # ------------------------------------------------------------------ state
    @property
    def pending_bytes(self) -> int:
        return self._size - self._cursor

    @property
    def pending(self) -> bool:
        return self._size > self._cursor

    # ------------------------------------------------------------------ writing
    def append(self, records: list[tuple[str, bytes]]) -> None:
        """Append and fsync; the records are durable when this returns."""
        file = self._require()
        payload = b"".join(encode_record(subject, data) for subject, data in records)
        file.seek(0, os.SEEK_END)
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())
        self._size += len(payload)

    # ------------------------------------------------------------------ replay
    def read(self, limit: int) -> list[SpoolRecord]:
        """Up to `limit` records from the cursor on, in order."""
        file = self._require()
        file.seek(self._cursor)
        records: list[SpoolRecord] = []
        offset = self._cursor
        while len(records) < limit and offset < self._size:
            line = file.readline()
            if not line:
                break
            offset += len(line)
            record = decode_record(line)
            if record is None:
                log.error("skipping a malformed spool record at offset %d", offset - len(line))
                continue
            records.append(SpoolRecord(record[0], record[1], offset))
        if not records and offset > self._cursor:
            self.advance(offset)  # only malformed records were left
        return records

    def advance(self, offset: int) -> None:
        """Mark everything before `offset` acknowledged."""
        self._cursor = offset
        if self._cursor >= self._size:
            file = self._require()
            file.truncate(0)
            file.flush()
            os.fsync(file.fileno())
            self._size = 0
            self._cursor = 0
        self._write_cursor(self._cursor)

    # ------------------------------------------------------------------ internals
    def _path(self, suffix: str) -> Path:
        return self.directory / f"usage-{self.slot}.{suffix}"

    def _require(self) -> IO[bytes]:
        if self._file is None:
            raise PermanentError("the usage spool is not open")
        return self._file

    def _recover_tail(self) -> int:
        file = self._require()
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        probe = max(0, size - _TAIL_PROBE)
        while True:
            file.seek(probe)
            window = file.read(size - probe)
            last = window.rfind(b"\n")
            if last >= 0:
                good = probe + last + 1
                break
            if probe == 0:
                good = 0
                break
            probe = max(0, probe - _TAIL_PROBE)
        if good < size:
            log.warning("cutting a torn usage record (%d bytes) off the spool", size - good)
            file.truncate(good)
            file.flush()
            os.fsync(file.fileno())
        return good

    def _read_cursor(self) -> int:
        try:
            return int(self._path("cursor").read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.error("unreadable spool cursor: replaying the whole spool (duplicates are dropped)")
            return 0

    def _write_cursor(self, offset: int) -> None:
        target = self._path("cursor")
        temporary = target.with_suffix(".cursor.tmp")
        with temporary.open("wb") as out:
            out.write(str(offset).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
