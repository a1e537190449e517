"""One container of a pod through its life: pull, create, start, probe, end, restart.

- no image rule: ErrImagePull and ImagePullBackOff for ever (see `pulls`);
- a simulated image: `Pulled`, `Created`, `Started`, running and ready with no process
  (an init container completes at once); its log says it is simulated;
- a runnable image: a process per attempt (see `launch`, `processes`), `Created`
  "Created container: c" and `Started` "Started container c"; its probes (see
  `probing`) gate `started` and `ready` and may kill it (`Killing`); when it ends the
  restart policy decides: Always (init containers: OnFailure) and OnFailure restart after
  `container_state.back_off` (scaled by the config's `backoff_scale`), waiting in
  CrashLoopBackOff with a `BackOff` Warning, and the previous log kept;
- a ConfigMap or Secret missing for its env: waiting CreateContainerConfigError, tried again.
Cancellation (pod deleted, kubelet stopping) stops the process within the grace period.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arks_devcluster.kubelet.config import ImageRule
from arks_devcluster.kubelet.container_state import (
    BACKOFF_RESET,
    ContainerStatus,
    back_off,
    go_duration,
    new_container_id,
    seconds_between,
    termination_message,
)
from arks_devcluster.kubelet.environment import ContainerConfigError
from arks_devcluster.kubelet.host import PodHost
from arks_devcluster.kubelet.images import pull_policy, rule_for
from arks_devcluster.kubelet.launch import StartError
from arks_devcluster.kubelet.probing import watch_probes
from arks_devcluster.kubelet.pulls import fail_pulls
from arks_devcluster.store import now

Obj = dict[str, Any]
CONFIG_RETRY = 2.0


class ContainerRunner:
    def __init__(self, host: PodHost, container: Obj, *, init: bool) -> None:
        self.host = host
        self.container = container
        self.name = str(container["name"])
        self.init = init
        self.status = ContainerStatus(self.name, str(container.get("image") or ""))
        self.field_path = f"spec.{'initContainers' if init else 'containers'}{{{self.name}}}"
        self._failures = 0

    def _event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.host.event(reason, message, warning=warning, field_path=self.field_path)

    def _scaled(self, seconds: float) -> float:
        return seconds * self.host.config.backoff_scale

    async def run(self) -> int:
        """Run until the container is done for good; its last exit code."""
        image = self.status.image
        rule = rule_for(self.host.config.images, image)
        if rule is None:
            await fail_pulls(self.host, self.status, self._event)
        assert rule is not None
        if pull_policy(self.container) == "Always":
            self._event("Pulling", f'Pulling image "{image}"')
            self._event(
                "Pulled",
                f'Successfully pulled image "{image}" in 0s (0s including waiting). '
                "Image size: 0 bytes.",
            )
        else:
            self._event("Pulled", f'Container image "{image}" already present on machine')
        if rule.simulate:
            return await self._simulate(image)
        while True:
            code = await self._attempt(rule)
            if code is None:
                await asyncio.sleep(self._scaled(CONFIG_RETRY))
                continue
            if not self._restarts(code):
                return code
            await self._back_off()

    async def _simulate(self, image: str) -> int:
        self.status.container_id = new_container_id()
        self.status.attempt += 1
        log = self.host.log_path(self.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"arks devcluster: image {image} is simulated here: no process runs\n")
        self._event("Created", f"Created container: {self.name}")
        self._event("Started", f"Started container {self.name}")
        stamp = now()
        if self.init:
            self.status.terminated(0, stamp, stamp)
            self.host.sync()
            return 0
        self.status.running(stamp)
        self.status.started = self.status.ready = True
        self.host.sync()
        await asyncio.Event().wait()
        return 0

    async def _attempt(self, rule: ImageRule) -> int | None:
        """One instance of the container; its exit code (None: not configurable yet)."""
        try:
            launch = self.host.launch(self.container, rule)
        except ContainerConfigError as exc:
            self._event("Failed", f"Error: {exc}", warning=True)
            self.status.waiting("CreateContainerConfigError", str(exc))
            self.host.sync()
            return None
        except StartError as exc:
            message = f"failed to create containerd task: failed to create shim task: {exc}"
            self.status.container_id = new_container_id()
            self._event("Failed", f"Error: {message}", warning=True)
            self.status.terminated(128, None, now(), message)
            self.host.sync()
            return 128
        log = self.host.log_path(self.name)
        if self.status.attempt and log.exists():
            log.replace(self.host.log_path(self.name, previous=True))
        launch.termination_log.unlink(missing_ok=True)
        self.status.container_id = new_container_id()
        self._event("Created", f"Created container: {self.name}")
        proc = await self.host.processes.start(launch, log)
        self._event("Started", f"Started container {self.name}")
        started_at = now()
        self.status.attempt += 1
        self.status.running(started_at)
        self.status.started = "startupProbe" not in self.container
        self.status.ready = self.status.started and "readinessProbe" not in self.container
        self.host.sync()
        exited = asyncio.create_task(
            self.host.processes.wait(proc), name=f"container-{self.name}-exit"
        )
        probes = asyncio.create_task(
            watch_probes(self.host, self.container, self.status, launch, self._event),
            name=f"container-{self.name}-probes",
        )
        try:
            done, _ = await asyncio.wait({exited, probes}, return_when=asyncio.FIRST_COMPLETED)
            if exited in done:
                code = exited.result()
            else:
                self._event("Killing", probes.result())
                code = await self.host.processes.stop(proc, self.host.grace)
        finally:
            probes.cancel()
            if proc.returncode is None:
                if self.host.deleting:
                    self._event("Killing", f"Stopping container {self.name}")
                await self.host.processes.stop(proc, self.host.grace)
            exited.cancel()
            await asyncio.gather(probes, exited, return_exceptions=True)
        self.status.terminated(
            code,
            started_at,
            now(),
            termination_message(
                launch.termination_log,
                self.host.log_path(self.name),
                self.container.get("terminationMessagePolicy"),
                code,
            ),
        )
        self.host.sync()
        return code

    def _restarts(self, code: int) -> bool:
        policy = self.host.restart_policy()
        if self.init and policy == "Always":
            policy = "OnFailure"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    async def _back_off(self) -> None:
        end = self.status.state.get("terminated") or {}
        self.status.last_state = {"terminated": end}
        ran = seconds_between(end.get("startedAt"), end.get("finishedAt"))
        if ran >= BACKOFF_RESET:
            self._failures = 0
        delay = back_off(self._failures)
        self._failures += 1
        if delay > 0:
            self.status.waiting(
                "CrashLoopBackOff",
                f"back-off {go_duration(delay)} restarting failed container={self.name} "
                f"pod={self.host.identity}",
            )
            self._event(
                "BackOff",
                f"Back-off restarting failed container {self.name} in pod {self.host.identity}",
                warning=True,
            )
            self.host.sync()
            await asyncio.sleep(self._scaled(delay))
        self.status.restart_count += 1
