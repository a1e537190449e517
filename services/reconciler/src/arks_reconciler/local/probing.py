"""Running `instanceSpec` probes against a replica process, and their bookkeeping.

When an application gives probes they replace the fixed `/health` poll, with
Kubernetes' meaning:

- `startupProbe`: until it succeeds once, readiness and liveness are not run; it failing
  `failureThreshold` times in a row kills the replica (restart with backoff). Without
  one, a replica not ready within `startup_timeout` is restarted, as before.
- `readinessProbe`: gates traffic only: `successThreshold` successes make the replica
  Ready, `failureThreshold` failures Unready; it never restarts it. Without one, the
  `/health` poll is the readiness check (and a replica that stays unready is restarted
  after 3 x `failure_threshold` failures, unless a liveness probe is given).
- `livenessProbe`: `failureThreshold` failures in a row kill the replica.

`httpGet` succeeds with a status in [200, 400); `tcpSocket` when the connection opens;
`exec` when the command (run on this machine, with the replica's environment) exits 0.
Each probe runs every `periodSeconds` after `initialDelaySeconds` from the process's
start, but no more often than the supervisor's tick (`health_interval`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from arks_reconciler.local.instance import Probe


@dataclass
class ProbeState:
    last_run: float = float("-inf")
    successes: int = 0
    failures: int = 0

    def due(self, probe: Probe, now: float, started: float) -> bool:
        return now - started >= probe.initial_delay and now - self.last_run >= probe.period

    def count(self, ok: bool) -> None:
        if ok:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0


async def run(
    probe: Probe,
    *,
    host: str,
    port: int,
    client: httpx.AsyncClient,
    env: Mapping[str, str] | None = None,
) -> bool:
    target_host = probe.host or host
    target_port = probe.port if probe.port is not None else port
    if probe.kind == "http":
        url = f"{probe.scheme}://{target_host}:{target_port}{probe.path}"
        try:
            response = await client.get(
                url, headers=dict(probe.headers), timeout=probe.timeout, follow_redirects=False
            )
        except httpx.HTTPError:
            return False
        return 200 <= response.status_code < 400
    if probe.kind == "tcp":
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(target_host, target_port), probe.timeout
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    try:
        proc = await asyncio.create_subprocess_exec(
            *probe.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
        )
    except OSError:
        return False
    try:
        return await asyncio.wait_for(proc.wait(), probe.timeout) == 0
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False
