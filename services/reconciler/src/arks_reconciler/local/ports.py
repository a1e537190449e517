"""Free TCP ports for replicas, from a configured range or from the kernel.

A port is "free" if we can bind it now and we have not handed it out already; a replica
that loses the race for it to another program fails to bind, exits, and is restarted on
another port by the supervisor. Binding a socket does not block.
"""

from __future__ import annotations

import socket

from arks_common import embedded
from arks_common.errors import RetryableError


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class PortAllocator:
    def __init__(self, host: str, low: int = 0, high: int = 0) -> None:
        self.host = host
        self.low = low
        self.high = high
        self.in_use: set[int] = set()

    def reserve(self, port: int) -> None:
        """Mark a port as ours (an adopted replica's)."""
        self.in_use.add(port)

    def release(self, port: int) -> None:
        self.in_use.discard(port)

    def allocate(self, prefer: int | None = None) -> int:
        if (
            prefer
            and prefer not in self.in_use
            and self._allowed(prefer)
            and embedded.port_is_free(prefer, self.host)
        ):
            self.in_use.add(prefer)
            return prefer
        if self.low:
            for port in range(self.low, self.high + 1):
                if port not in self.in_use and embedded.port_is_free(port, self.host):
                    self.in_use.add(port)
                    return port
            raise RetryableError(f"no free port in {self.low}-{self.high} for a replica", delay=5.0)
        for _ in range(100):
            port = _kernel_port(self.host)
            if port not in self.in_use:
                self.in_use.add(port)
                return port
        raise RetryableError("the kernel offers no free port", delay=5.0)

    def _allowed(self, port: int) -> bool:
        return not self.low or self.low <= port <= self.high
