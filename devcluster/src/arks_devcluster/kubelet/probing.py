"""A running container's probes over time: startup, then readiness and liveness.

As the kubelet's prober: nothing but the startup probe runs until it succeeds (then
`started`); readiness starts failed and flips after successThreshold successes or
failureThreshold failures (`ready`; without a readiness probe the container is ready once
started); liveness or startup failing failureThreshold times in a row ends the watch
with the `Killing` message ("Container c failed liveness probe, will be restarted").
Every failed attempt records an `Unhealthy` Warning ("Readiness probe failed: ...").
initialDelaySeconds counts from the container's start; periods are capped by the
config's `probe_period_cap` (dev speed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from arks_devcluster.kubelet.container_state import ContainerStatus
from arks_devcluster.kubelet.host import PodHost
from arks_devcluster.kubelet.launch import Launch
from arks_devcluster.kubelet.probes import Timing, probe_once, timing

Obj = dict[str, Any]
EventSink = Callable[..., None]


async def _delay(timing_: Timing, started: float) -> None:
    remaining = timing_.initial_delay - (asyncio.get_running_loop().time() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)


async def _until_verdict(
    host: PodHost,
    container: Obj,
    probe: Obj,
    kind: str,
    launch: Launch,
    event: EventSink,
    started: float,
    on_result: Callable[[bool, int, int], bool],
) -> None:
    """Probe every period, counting consecutive results; stop when `on_result(ok,
    successes, failures)` says so."""
    when = timing(probe, host.config.probe_period_cap)
    await _delay(when, started)
    successes = failures = 0
    while True:
        result = await probe_once(probe, container, host.pod_ip, launch)
        if result.ok:
            successes, failures = successes + 1, 0
        else:
            successes, failures = 0, failures + 1
            event("Unhealthy", f"{kind} probe failed: {result.message}", warning=True)
        if on_result(result.ok, successes, failures):
            return
        await asyncio.sleep(when.period)


async def watch_probes(
    host: PodHost, container: Obj, status: ContainerStatus, launch: Launch, event: EventSink
) -> str:
    """Run the container's probes; return only when it must be killed (the reason)."""
    name = container["name"]
    started = asyncio.get_running_loop().time()
    startup = container.get("startupProbe")
    readiness = container.get("readinessProbe")
    liveness = container.get("livenessProbe")
    verdict: list[str] = []

    def killer(kind: str, probe: Obj) -> Callable[[bool, int, int], bool]:
        threshold = timing(probe, host.config.probe_period_cap).failure_threshold

        def decide(ok: bool, successes: int, failures: int) -> bool:
            if kind == "Startup" and ok:
                status.started = True
                status.ready = readiness is None
                host.sync()
                return True
            if failures >= threshold:
                verdict.append(f"Container {name} failed {kind.lower()} probe, will be restarted")
                return True
            return False

        return decide

    if startup is not None:
        await _until_verdict(
            host, container, startup, "Startup", launch, event, started, killer("Startup", startup)
        )
        if verdict:
            return verdict[0]

    async def ready_loop(probe: Obj) -> None:
        when = timing(probe, host.config.probe_period_cap)

        def decide(ok: bool, successes: int, failures: int) -> bool:
            flip = (ok and successes >= when.success_threshold and not status.ready) or (
                not ok and failures >= when.failure_threshold and status.ready
            )
            if flip:
                status.ready = ok
                host.sync()
            return False

        await _until_verdict(host, container, probe, "Readiness", launch, event, started, decide)

    tasks: list[asyncio.Task[None]] = []
    try:
        if readiness is not None:
            tasks.append(asyncio.create_task(ready_loop(readiness), name=f"readiness-{name}"))
        if liveness is None:
            await asyncio.Event().wait()
        else:
            await _until_verdict(
                host,
                container,
                liveness,
                "Liveness",
                launch,
                event,
                started,
                killer("Liveness", liveness),
            )
        return verdict[0]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
