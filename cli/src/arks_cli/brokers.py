"""nats-server and Valkey under `arks up`, supervised like the services.

A `Broker` puts one `arks_common.embedded` server (`NatsServer`, `ValkeyServer`) under
the supervision loop of `supervising.Supervised`: killed or crashed, it is restarted
with backoff by the server object's own `start()`, so with the very command line it
started with (port, data directory and whatever else the launcher configured), and
`start()` returns only once it serves (Valkey: at +PONG, after replaying its
append-only file). The services reconnect by themselves meanwhile.

Each restart is a warning on the console naming the broker's log, a header line in that
log, and a new pid in `.arks/state.json` (through `on_change`). A restart that fails (the
port taken by someone else in the meantime, say) is retried with the same backoff; the
half-started process is killed first, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from arks_cli.console import Console
from arks_cli.supervising import Supervised
from arks_common.embedded import NatsServer, ValkeyServer
from arks_common.errors import ArksError

EXIT_POLL = 0.1
"""How often a broker's exit is looked for: the most a restart waits to begin."""
RESTART_TIMEOUT = 60.0
"""How long a restart may take to serve: Valkey first replays its whole append-only file,
and one cut short would be retried (and cut short) forever."""

Server = NatsServer | ValkeyServer


class Broker(Supervised):
    """One broker server under supervision (see the module docstring)."""

    def __init__(
        self,
        name: str,
        server: Server,
        log_path: Path,
        console: Console,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name, log_path, console, on_change)
        self.server = server

    @property
    def pid(self) -> int | None:
        proc = self.server.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    async def _start(self) -> None:
        # Close what the dead process left open (its log handle) before starting again.
        self.server.kill()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            log.write(f"--- arks up: restarting {self.name} at {stamp}\n".encode())
        try:
            await asyncio.to_thread(self.server.start, RESTART_TIMEOUT)
        except (ArksError, OSError):
            await asyncio.to_thread(self.server.kill)
            raise

    async def _wait(self) -> int:
        proc: subprocess.Popen[bytes] | None = self.server.proc
        assert proc is not None
        # A subprocess.Popen (the embedded server's) has no awaitable exit; polling it
        # costs nothing and keeps the executor's threads free.
        while (code := proc.poll()) is None:  # noqa: ASYNC110 - polls the OS
            await asyncio.sleep(EXIT_POLL)
        if not self.stopping():
            # Forget the dead process at once, so the state file stops naming its pid.
            self.server.kill()
        return code

    async def _terminate(self, grace: float, force: asyncio.Event | None) -> None:
        # `force` is not heeded: a broker stops within seconds, and a clean stop lets
        # NATS close its JetStream files and Valkey its append-only file.
        await asyncio.to_thread(self.server.stop, grace)
