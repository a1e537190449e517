"""One pod on a node, from its sandbox to its end: the kubelet's pod worker.

The sandbox is the pod's directory `<workdir>/pods/<ns>_<pod>_<uid>/` (logs, volumes,
working directory) and its own loopback IP (`hostNetwork` pods use the node's,
127.0.0.1). Volumes are prepared first (a missing ConfigMap or Secret: `FailedMount`,
tried again every few seconds); then init containers run one after the other, each to
success; then the regular containers together (see `containers`). Every change of a
container writes the pod's status at once (see `pod_status`); a write to a pod that is
gone is skipped. When the pod's containers are all done for good (restartPolicy Never or
OnFailure), the phase stays Succeeded or Failed and nothing runs.

Cancelling the worker (pod deleted, kubelet stopping) stops its processes — SIGTERM,
then SIGKILL after min(terminationGracePeriodSeconds, the config's `grace_period_cap`) —
releases the IP and removes emptyDir volumes; logs stay.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from arks_devcluster.errors import ApiError
from arks_devcluster.kubelet.config import ClusterConfig, ImageRule
from arks_devcluster.kubelet.container_state import ContainerStatus
from arks_devcluster.kubelet.containers import ContainerRunner
from arks_devcluster.kubelet.launch import Launch, prepare_launch
from arks_devcluster.kubelet.nodes import HOST_IP
from arks_devcluster.kubelet.pod_status import TERMINAL, phase, pod_status
from arks_devcluster.kubelet.processes import Processes
from arks_devcluster.kubelet.volumes import VolumeError, prepare
from arks_devcluster.local_client import LocalClient
from arks_devcluster.store import now

log = logging.getLogger(__name__)
Obj = dict[str, Any]
VOLUME_RETRY = 2.0


def pod_dir_name(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta['namespace']}_{meta['name']}_{meta['uid']}"


class PodWorker:
    def __init__(
        self,
        client: LocalClient,
        pod: Obj,
        *,
        config: ClusterConfig,
        processes: Processes,
        workdir: Path,
        pod_ip: str,
        allocatable: dict[str, str],
    ) -> None:
        meta = pod["metadata"]
        self.client = client
        self.pod = pod
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.identity = f"{self.name}_{self.namespace}({self.uid})"
        self.config = config
        self.processes = processes
        self.workdir = workdir
        self.dir = workdir / "pods" / pod_dir_name(pod)
        self.pod_ip = pod_ip
        self.allocatable = allocatable
        spec = pod.get("spec") or {}
        grace = spec.get("terminationGracePeriodSeconds")
        self.grace = min(float(30 if grace is None else grace), config.grace_period_cap)
        self.deleting = False
        self.start_time = now()
        self.sandbox = False
        self.volumes: dict[str, Path] = {}
        self.init = [ContainerRunner(self, c, init=True) for c in spec.get("initContainers") or []]
        self.main = [ContainerRunner(self, c, init=False) for c in spec.get("containers") or []]
        if self.init:
            for runner in self.main:
                runner.status.waiting("PodInitializing")
        self._phase = "Pending"

    # ------------------------------------------------------------ for the containers
    def restart_policy(self) -> str:
        return str((self.pod.get("spec") or {}).get("restartPolicy") or "Always")

    def log_path(self, container: str, *, previous: bool = False) -> Path:
        return self.dir / f"{container}{'.previous' if previous else ''}.log"

    def event(
        self, reason: str, message: str, *, warning: bool = False, field_path: str | None = None
    ) -> None:
        self.client.event(self.pod, reason, message, warning=warning, field_path=field_path)

    def launch(self, container: Obj, rule: ImageRule) -> Launch:
        current = self.client.get("", "pods", self.namespace, self.name) or self.pod
        return prepare_launch(
            current,
            container,
            rule,
            pod_ip=self.pod_ip,
            pod_dir=self.dir,
            volumes=self.volumes,
            lookup=lambda plural, ns, name: self.client.get("", plural, ns, name),
            allocatable=self.allocatable,
        )

    def statuses(self) -> list[ContainerStatus]:
        return [r.status for r in (*self.init, *self.main)]

    def sync(self) -> None:
        """Write the pod's status now (nothing when the pod is gone or replaced)."""
        current = self.client.get("", "pods", self.namespace, self.name)
        if current is None or current["metadata"]["uid"] != self.uid:
            return
        if self._phase not in TERMINAL:
            self._phase = phase(
                [r.status for r in self.init], [r.status for r in self.main], self.restart_policy()
            )
        current["status"] = pod_status(
            current,
            [r.status for r in self.init],
            [r.status for r in self.main],
            phase_now=self._phase,
            pod_ip=self.pod_ip,
            start_time=self.start_time,
            sandbox=self.sandbox,
        )
        try:
            self.client.update(current, status=True)
        except ApiError as exc:
            log.warning("status of pod %s/%s not written: %s", self.namespace, self.name, exc)

    # ------------------------------------------------------------ the pod's life
    async def run(self) -> None:
        try:
            await self._live()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s: the kubelet's worker failed", self.namespace, self.name)
        finally:
            self._clean_up()

    async def _live(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sync()
        await self._prepare_volumes()
        self.sandbox = True
        self.sync()
        for runner in self.init:
            code = await runner.run()
            if code != 0:  # only under restartPolicy Never: the pod has failed
                self.sync()
                return
        if self.init:
            for runner in self.main:
                runner.status.waiting("ContainerCreating")
        async with asyncio.TaskGroup() as group:
            for runner in self.main:
                group.create_task(runner.run(), name=f"container-{self.name}-{runner.name}")
        self.sync()

    async def _prepare_volumes(self) -> None:
        while True:
            try:
                current = self.client.get("", "pods", self.namespace, self.name) or self.pod
                # In the loop, not a thread: the lookups read the store.
                self.volumes = prepare(
                    current,
                    self.dir,
                    self.workdir,
                    lambda plural, ns, name: self.client.get("", plural, ns, name),
                )
                return
            except VolumeError as exc:
                self.event("FailedMount", str(exc), warning=True)
            await asyncio.sleep(VOLUME_RETRY * min(1.0, self.config.backoff_scale * 10))

    def _clean_up(self) -> None:
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            if "persistentVolumeClaim" in volume or "hostPath" in volume:
                continue
            shutil.rmtree(self.dir / "volumes" / volume["name"], ignore_errors=True)


def host_network(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))


__all__ = ["HOST_IP", "PodWorker", "host_network", "pod_dir_name"]
