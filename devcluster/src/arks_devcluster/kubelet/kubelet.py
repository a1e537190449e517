"""`Kubelet`: the configured nodes, the scheduler and a pod worker per pod bound to them.

    kubelet = Kubelet(api, load_config(None), workdir)
    task = asyncio.create_task(kubelet.run())
    await kubelet.registered()      # the Node objects exist
    ...
    task.cancel()                   # every process it started is stopped on the way out

`run()` registers the nodes (again whenever one is deleted), runs the scheduler, serves
`kubectl logs` (`api.pod_logs`) and keeps one `PodWorker` per live pod whose
`spec.nodeName` is a configured node: a new pod gets a worker (and an IP), a pod deleted
or being deleted has its worker cancelled, which stops its processes. Pods that finished
are not run again. Cancelling `run()` cancels every worker and waits for their processes
to stop (each within its grace period); any process still alive after that is killed.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arks_devcluster.kubelet.addresses import PodAddresses
from arks_devcluster.kubelet.config import ClusterConfig
from arks_devcluster.kubelet.logs import PodLogs
from arks_devcluster.kubelet.nodes import HOST_IP, allocatable, register
from arks_devcluster.kubelet.pod_status import TERMINAL
from arks_devcluster.kubelet.pods import PodWorker, host_network
from arks_devcluster.kubelet.processes import Processes
from arks_devcluster.kubelet.scheduler import Scheduler
from arks_devcluster.local_client import LocalClient

if TYPE_CHECKING:
    from arks_devcluster.api import FakeKubeApi

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class Kubelet:
    def __init__(self, api: FakeKubeApi, config: ClusterConfig, workdir: Path) -> None:
        self.api = api
        self.config = config
        self.workdir = workdir.resolve()
        self.client = LocalClient(api, manager="kubelet")
        self.scheduler = Scheduler(LocalClient(api, manager="default-scheduler"))
        self.addresses = PodAddresses()
        self.processes = Processes()
        self.workers: dict[str, tuple[PodWorker, asyncio.Task[None]]] = {}
        self.logs = PodLogs(self.workdir, self._running)
        self._nodes = {node.name: node for node in config.nodes}
        self._registered = asyncio.Event()
        self._nodes_registered = False

    async def registered(self) -> None:
        """Return once the nodes are registered (RuntimeError if `run()` ended first)."""
        await self._registered.wait()
        if not self._nodes_registered:
            raise RuntimeError("the kubelet stopped before registering its nodes")

    def _running(self, uid: str, container: str) -> bool:
        found = self.workers.get(uid)
        if found is None:
            return False
        worker, _ = found
        return any(
            r.name == container and r.status.is_running for r in (*worker.init, *worker.main)
        )

    async def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.api.pod_logs = self.logs
        self.logs.closed = False
        try:
            with self.client.subscribe(("", "pods"), ("", "nodes")) as changes:
                register(self.client, self.config.nodes)
                self._nodes_registered = True
                self._registered.set()
                async with asyncio.TaskGroup() as group:
                    group.create_task(self.scheduler.run(), name="devcluster-scheduler")
                    while True:
                        self._sync_pods(group)
                        batch = [await changes.get()]
                        while not changes.empty():
                            batch.append(changes.get_nowait())
                        if any(e.rtype.plural == "nodes" and e.type == "DELETED" for e in batch):
                            register(self.client, self.config.nodes)
        finally:
            self._registered.set()
            self.logs.closed = True
            self.processes.kill_all()
            self.addresses.release_all()
            if self.api.pod_logs is self.logs:
                self.api.pod_logs = None

    def _sync_pods(self, group: asyncio.TaskGroup) -> None:
        ours = {
            pod["metadata"]["uid"]: pod
            for pod in self.client.stored("", "pods")  # read only; a new worker's is a copy
            if (pod.get("spec") or {}).get("nodeName") in self._nodes
        }
        for uid, (worker, task) in list(self.workers.items()):
            pod = ours.get(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                if not task.done():
                    worker.deleting = True
                    task.cancel()
                if pod is None:
                    del self.workers[uid]
        for uid, pod in ours.items():
            if uid in self.workers or pod["metadata"].get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase") in TERMINAL:
                continue
            try:
                self._start(group, copy.deepcopy(pod))
            except Exception:  # one pod that cannot start must not stop the others
                log.exception("cannot run pod %s", pod["metadata"].get("name"))

    def _start(self, group: asyncio.TaskGroup, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = str(meta["uid"])
        node = self._nodes[str(pod["spec"]["nodeName"])]
        address = HOST_IP if host_network(pod) else self.addresses.allocate(uid)
        worker = PodWorker(
            self.client,
            pod,
            config=self.config,
            processes=self.processes,
            workdir=self.workdir,
            pod_ip=address,
            allocatable=allocatable(node),
        )
        task = group.create_task(worker.run(), name=f"pod-{meta['namespace']}-{meta['name']}")
        task.add_done_callback(lambda _: self.addresses.release(uid))
        self.workers[uid] = (worker, task)
        log.info(
            "running pod %s/%s on %s at %s", meta["namespace"], meta["name"], node.name, address
        )
