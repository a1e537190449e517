"""What a container needs of its pod's worker (`pods.PodWorker` provides it): the
config, the process table, the pod's IP, grace period and identity, status writes,
events, launch preparation, log paths and the restart policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from arks_devcluster.kubelet.config import ClusterConfig, ImageRule
from arks_devcluster.kubelet.launch import Launch
from arks_devcluster.kubelet.processes import Processes

Obj = dict[str, Any]


class PodHost(Protocol):
    """What a container needs of its pod's worker."""

    config: ClusterConfig
    processes: Processes
    pod_ip: str
    grace: float
    deleting: bool
    identity: str
    """`<pod>_<namespace>(<uid>)`, as the kubelet's messages name a pod."""

    def sync(self) -> None: ...

    def event(
        self, reason: str, message: str, *, warning: bool = False, field_path: str | None = None
    ) -> None: ...

    def launch(self, container: Obj, rule: ImageRule) -> Launch: ...

    def log_path(self, container: str, *, previous: bool = False) -> Path: ...

    def restart_policy(self) -> str: ...
