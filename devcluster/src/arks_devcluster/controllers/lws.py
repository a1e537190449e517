"""The LeaderWorkerSet controller (kubernetes-sigs/lws; field manager `lws`, Events from
`leaderworkerset`), active while the `leaderworkerset.x-k8s.io` CRD is installed.

For a set `<lws>`: the leader StatefulSet `<lws>` (replicas = spec.replicas, Parallel,
the leader template or else the worker template, labels `leaderworkerset.sigs.k8s.io/name`,
`/worker-index: "0"` and `/template-revision-hash`, annotation `/size`); for each leader
pod `<lws>-<group>` a worker StatefulSet (see `lws_pods.worker_set`), created once the
leader exists (startupPolicy LeaderCreated) or is ready (LeaderReady); the headless
Service `<lws>` (one per group with subdomainPolicy UniquePerReplica). The webhook part,
labels and `LWS_*` env of each pod, is `lws_pods.default_pod`, applied as the StatefulSet
controller creates the pods. A template change is a new revision rolled out group by
group through the leader StatefulSet's partition (`lws_status.rolling_parameters`).
restartPolicy RecreateGroupOnPodRestart (the default): a container restart in a group,
or a worker pod deleted, deletes the group's leader, which takes its workers with it.
Status: replicas, readyReplicas, updatedReplicas, hpaPodSelector, observedGeneration,
conditions (`lws_status.conditions`).

Not done: ControllerRevision objects (the templates of past revisions are remembered in
memory for recreating old groups), exclusive topology placement, subgroups, TPU
variables, gang scheduling.
"""

from __future__ import annotations

from typing import Any

from arks_devcluster.controllers import lws_pods as lp
from arks_devcluster.controllers import lws_sets as ls
from arks_devcluster.controllers.loop import Controller, Key
from arks_devcluster.controllers.lws_status import (
    Groups,
    conditions,
    ready_and_updated,
    rolling_parameters,
)
from arks_devcluster.controllers.pods import is_running_and_ready, is_terminating
from arks_devcluster.controllers.util import int_or, merged_into, omit_zero, template_hash
from arks_devcluster.store import Event

Obj = dict[str, Any]
GROUP, PLURAL = "leaderworkerset.x-k8s.io", "leaderworkersets"


class LeaderWorkerSetController(Controller):
    primary = (GROUP, PLURAL)
    owns = (("apps", "statefulsets"), ("", "pods"), ("", "services"))
    manager = "lws"
    component = "leaderworkerset"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._templates: dict[str, Obj] = {}  # "<uid>/<revision>" -> leaderWorkerTemplate
        self._lost: dict[Key, list[Obj]] = {}  # worker pods deleted since the last pass

    def keys_for(self, event: Event) -> list[Key]:
        keys = list(super().keys_for(event))
        meta = event.obj["metadata"]
        owner = (meta.get("labels") or {}).get(lp.NAME)
        if owner and event.rtype.plural in ("pods", "statefulsets"):
            key = (meta["namespace"], owner)
            keys.append(key)
            labels = meta.get("labels") or {}
            if (
                event.type == "DELETED"
                and event.rtype.plural == "pods"
                and labels.get(lp.WORKER_INDEX) != "0"
            ):
                self._lost.setdefault(key, []).append(event.obj)
        return keys

    def reconcile(self, namespace: str, name: str) -> float | None:
        lost = self._lost.pop((namespace, name), [])
        if not self.client.served(GROUP, PLURAL):
            return None
        lws = self.client.get(GROUP, PLURAL, namespace, name)
        if lws is None or lws["metadata"].get("deletionTimestamp"):
            return None
        spec = lws.get("spec") or {}
        template = spec.get("leaderWorkerTemplate") or {}
        key = template_hash(
            {"leaderWorkerTemplate": template, "networkConfig": spec.get("networkConfig")}
        )
        self._templates[f"{lws['metadata']['uid']}/{key}"] = template
        sts = self.client.get("apps", "statefulsets", namespace, name)
        updated = sts is not None and (sts["metadata"].get("labels") or {}).get(lp.REVISION) != key
        if sts is None or updated:
            what = "an updated LWS" if updated else "a newly created LeaderWorkerSet"
            self.client.event(
                lws, "CreatingRevision", f"Creating revision with key {key} for {what}"
            )
        partition, replicas = rolling_parameters(self._groups(lws, key), sts, updated)
        self._leader_set(lws, key, partition, replicas, sts)
        self._services(lws)
        self._restart_groups(lws, self._groups(lws, key), lost)
        self._worker_sets(lws, self._groups(lws, key))
        self._status(lws, self._groups(lws, key))
        return None

    def _groups(self, lws: Obj, key: str) -> Groups:
        namespace, name = lws["metadata"]["namespace"], lws["metadata"]["name"]
        leaders: dict[int, Obj] = {}
        for pod in self.client.list("", "pods", namespace, f"{lp.NAME}={name},{lp.WORKER_INDEX}=0"):
            index = (pod["metadata"].get("labels") or {}).get(lp.GROUP_INDEX, "")
            if index.isdigit() and pod["metadata"]["name"] == f"{name}-{index}":
                leaders[int(index)] = pod
        workers = {
            sts["metadata"]["name"]: sts
            for sts in self.client.list("apps", "statefulsets", namespace, f"{lp.NAME}={name}")
            if sts["metadata"]["name"] != name
        }
        return Groups(lws, key, leaders, workers)

    def _leader_set(
        self, lws: Obj, key: str, partition: int, replicas: int, sts: Obj | None
    ) -> None:
        wanted = ls.leader_set(lws, key, partition, replicas)
        name = lws["metadata"]["name"]
        if sts is None:
            self.client.create(wanted)
            self.client.event(lws, "GroupsProgressing", f"Created leader statefulset {name}")
            return
        merged = merged_into(sts, wanted)
        if merged != sts:
            self.client.update(merged)
        before = ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get(
            "partition", 0
        )
        if partition < before and (sts["metadata"].get("labels") or {}).get(lp.REVISION) == key:
            message = (
                f"Updating replica {partition}"
                if before - 1 == partition
                else f"Updating replicas {partition} to {before - 1} (inclusive)"
            )
            self.client.event(lws, "GroupsUpdating", message)

    def _services(self, lws: Obj) -> None:
        name, namespace = lws["metadata"]["name"], lws["metadata"]["namespace"]
        if ((lws.get("spec") or {}).get("networkConfig") or {}).get(
            "subdomainPolicy"
        ) == "UniquePerReplica":
            for leader in self._groups(lws, "").leaders.values():
                labels = leader["metadata"]["labels"]
                self._service(
                    lws,
                    leader,
                    leader["metadata"]["name"],
                    {lp.NAME: name, lp.GROUP_INDEX: labels[lp.GROUP_INDEX]},
                )
        elif self.client.get("", "services", namespace, name) is None:
            self._service(lws, lws, name, {lp.NAME: name})

    def _service(self, lws: Obj, owner: Obj, name: str, selector: dict[str, str]) -> None:
        if self.client.get("", "services", owner["metadata"]["namespace"], name) is None:
            self.client.create(ls.headless_service(lws, owner, name, selector))

    def _restart_groups(self, lws: Obj, groups: Groups, lost: list[Obj]) -> None:
        """RecreateGroupOnPodRestart: a restarted container or a deleted worker takes the
        group down (its leader, and with it the worker StatefulSet)."""
        template = (lws.get("spec") or {}).get("leaderWorkerTemplate") or {}
        policy = template.get("restartPolicy", "RecreateGroupOnPodRestart")
        if policy not in ("RecreateGroupOnPodRestart", "RecreateGroupAfterStart"):
            return
        namespace, name = lws["metadata"]["namespace"], lws["metadata"]["name"]
        for index, leader in groups.leaders.items():
            if is_terminating(leader):
                continue
            members = self.client.list(
                "", "pods", namespace, f"{lp.NAME}={name},{lp.GROUP_INDEX}={index}"
            )
            workers = groups.workers.get(leader["metadata"]["name"])
            culprit = lp.restart_culprit(policy, groups.size, leader, members, workers, lost)
            if culprit is None:
                continue
            self.client.delete(leader, policy="Foreground")
            self.client.event(
                lws,
                "RecreateGroup",
                f"Worker pod {culprit['metadata']['name']} failed, deleted leader pod "
                f"{leader['metadata']['name']} to recreate group {index}",
            )

    def _worker_sets(self, lws: Obj, groups: Groups) -> None:
        if groups.size <= 1:
            return
        startup = (lws.get("spec") or {}).get("startupPolicy", "LeaderCreated")
        for leader in groups.leaders.values():
            leader_name = leader["metadata"]["name"]
            if is_terminating(leader) or leader_name in groups.workers:
                continue
            if startup == "LeaderReady" and not is_running_and_ready(leader):
                continue
            revision = (leader["metadata"].get("labels") or {}).get(lp.REVISION, "")
            current = (lws.get("spec") or {}).get("leaderWorkerTemplate") or {}
            template = self._templates.get(f"{lws['metadata']['uid']}/{revision}", current)
            self.client.create(ls.worker_set(lws, leader, template))
            self.client.event(
                lws, "GroupsProgressing", f"Created worker statefulset for leader pod {leader_name}"
            )

    def _status(self, lws: Obj, groups: Groups) -> None:
        name = lws["metadata"]["name"]
        sts = self.client.get("apps", "statefulsets", lws["metadata"]["namespace"], name)
        status = dict(lws.get("status") or {})
        ready, updated = ready_and_updated(groups)
        status.update(
            replicas=int_or(((sts or {}).get("status") or {}).get("replicas"), 0),
            readyReplicas=ready,
            updatedReplicas=updated,
            observedGeneration=lws["metadata"].get("generation", 1),
            hpaPodSelector=f"{lp.NAME}={name},{lp.WORKER_INDEX}=0",
        )
        status["conditions"], event = conditions(groups, list(status.get("conditions") or []))
        status = omit_zero(status, "replicas", "readyReplicas", "updatedReplicas")
        if status != lws.get("status"):
            self.client.update({**lws, "status": status}, status=True)
        if event is not None:
            self.client.event(lws, *event)
