"""Pod IPs: one loopback address 127.0.X.Y per pod (never 127.0.0.x).

Linux routes all of 127.0.0.0/8 to the loopback interface, so a process bound to
127.0.3.7:8000 is reachable at that address while another pod's process binds
127.0.3.8:8000: every pod keeps the ports its manifest names. Addresses are handed out
round-robin from 127.0.1.1 to 127.0.255.254, so a released one is reused last. A claim
is an flock on a file in the temporary directory (`arks-devcluster-pod-ips/`), held
while the pod lives: dev clusters running side by side (parallel tests) never share an
address. Every address taken raises RuntimeError.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

FIRST = (1, 1)
_CAPACITY = 255 * 254


def _address(index: int) -> str:
    third, fourth = divmod(index, 254)
    return f"127.0.{third + FIRST[0]}.{fourth + 1}"


class PodAddresses:
    def __init__(self, lock_dir: Path | None = None) -> None:
        self.lock_dir = lock_dir or Path(tempfile.gettempdir()) / "arks-devcluster-pod-ips"
        self._held: dict[str, tuple[str, int]] = {}
        """pod uid → (address, locked file descriptor)"""
        self._cursor = 0

    def address_of(self, uid: str) -> str | None:
        held = self._held.get(uid)
        return held[0] if held else None

    def allocate(self, uid: str) -> str:
        if uid in self._held:
            return self._held[uid][0]
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        for step in range(_CAPACITY):
            index = (self._cursor + step) % _CAPACITY
            address = _address(index)
            fd = os.open(self.lock_dir / address, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._cursor = index + 1
            self._held[uid] = (address, fd)
            return address
        raise RuntimeError("every pod address 127.0.1.1-127.0.255.254 is taken")

    def release(self, uid: str) -> None:
        held = self._held.pop(uid, None)
        if held is not None:
            os.close(held[1])  # closing the descriptor drops the lock

    def release_all(self) -> None:
        for uid in list(self._held):
            self.release(uid)
