"""LeaderWorkerSet pods: what the LWS pod webhook adds to a pod at creation
(kubernetes-sigs/lws pkg/webhooks/pod_webhook.go), the LWS label keys, and which pod
failure recreates a group (pkg/controllers/pod_controller.go).

`default_pod` runs on every pod the StatefulSet controller creates (a no-op without the
`leaderworkerset.sigs.k8s.io/name` label), as the mutating webhook would: a leader
(worker-index 0) gets its `group-index` from its name's ordinal, the `group-key` (SHA-1
of `<namespace>/<pod>`) and, with subdomainPolicy UniquePerReplica, its own subdomain; a
worker gets `worker-index` from its ordinal; every container and init container gets
`LWS_LEADER_ADDRESS` (`<lws>-<group>.<subdomain>.<namespace>`), `LWS_GROUP_SIZE` and
`LWS_WORKER_INDEX` first in its env, replacing variables of those names.
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

from arks_devcluster.controllers.pods import phase, restarts

Obj = dict[str, Any]
PREFIX = "leaderworkerset.sigs.k8s.io/"
NAME = PREFIX + "name"
GROUP_INDEX = PREFIX + "group-index"
WORKER_INDEX = PREFIX + "worker-index"
GROUP_KEY = PREFIX + "group-key"
REVISION = PREFIX + "template-revision-hash"
SIZE = PREFIX + "size"
REPLICAS = PREFIX + "replicas"
LEADER_NAME = PREFIX + "leader-name"
SUBDOMAIN_POLICY = PREFIX + "subdomainPolicy"


def parent_and_ordinal(name: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*)-([0-9]+)", name)
    return (match.group(1), int(match.group(2))) if match else ("", -1)


def group_key(namespace: str, name: str) -> str:
    return hashlib.sha1(f"{namespace}/{name}".encode()).hexdigest()  # upstream's key, not a secret


def default_pod(pod: Obj) -> Obj:
    """The LWS webhook's defaulting of a pod being created (in place, returned)."""
    meta = pod["metadata"]
    labels = meta.setdefault("labels", {})
    if NAME not in labels:
        return pod
    annotations = meta.get("annotations") or {}
    _, ordinal = parent_and_ordinal(meta["name"])
    if labels.get(WORKER_INDEX) == "0":
        labels.setdefault(GROUP_INDEX, str(ordinal))
        if annotations.get(SUBDOMAIN_POLICY) == "UniquePerReplica":
            pod["spec"]["subdomain"] = meta["name"]
        labels.setdefault(GROUP_KEY, group_key(meta["namespace"], meta["name"]))
    else:
        labels[WORKER_INDEX] = str(ordinal)
    spec = pod["spec"]
    injected = [
        {
            "name": "LWS_LEADER_ADDRESS",
            "value": f"{labels[NAME]}-{labels.get(GROUP_INDEX, '')}.{spec.get('subdomain', '')}."
            f"{meta['namespace']}",
        },
        {"name": "LWS_GROUP_SIZE", "value": str(annotations.get(SIZE, ""))},
        {"name": "LWS_WORKER_INDEX", "value": labels.get(WORKER_INDEX, "")},
    ]
    names = {env["name"] for env in injected}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        kept = [env for env in container.get("env") or [] if env.get("name") not in names]
        container["env"] = [*copy.deepcopy(injected), *kept]
    return pod


def restart_culprit(
    policy: str, size: int, leader: Obj, members: list[Obj], workers: Obj | None, lost: list[Obj]
) -> Obj | None:
    """The pod whose failure recreates a group under RecreateGroupOnPodRestart (or
    RecreateGroupAfterStart once no member is pending): a member with a restarted
    container, or a worker of this leader's StatefulSet and revision deleted (None: the
    group stays)."""
    pending = len(members) != size or any(phase(p) == "Pending" for p in members)
    if policy == "RecreateGroupAfterStart" and pending:
        return None
    restarted = [p for p in members if phase(p) in ("Running", "Pending") and restarts(p) > 0]
    if restarted:
        return restarted[0]
    if workers is None:
        return None
    revision = (leader["metadata"].get("labels") or {}).get(REVISION)
    for pod in lost:
        refs = pod["metadata"].get("ownerReferences") or []
        owned = any(ref.get("uid") == workers["metadata"]["uid"] for ref in refs)
        if owned and (pod["metadata"].get("labels") or {}).get(REVISION) == revision:
            return pod
    return None
