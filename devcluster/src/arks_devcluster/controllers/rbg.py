"""The RoleBasedGroup controller (sgl-project/rbg; field manager `rbg`, Events from
`RoleBasedGroup`), active while the `workloads.x-k8s.io` CRD is installed.

Roles are ordered by their `dependencies` (a missing role or a cycle is a Warning
`InvalidRoleDependency` and nothing is done); a role's workload (see `rbg_workloads`) is
created or updated only once the workloads of the roles it depends on are ready (Warning
`DependencyNotMet` until then), and the roles of later orders wait for earlier ones, as
upstream. A LeaderWorkerSet role while the LWS CRD is missing is a Warning
`FailedReconcileWorkload` until it is installed. Workloads of roles no longer in the
spec are deleted. Status: `roleStatuses` (name, replicas, readyReplicas; written once
every role has its workload) and condition `Ready` (AllRolesReady / RoleNotReady).
Not done: ControllerRevisions, scaling adapters, PodGroups.
"""

from __future__ import annotations

import copy
from typing import Any

from arks_devcluster.controllers import rbg_workloads as rw
from arks_devcluster.controllers.loop import Controller
from arks_devcluster.controllers.util import merged_into, set_condition

Obj = dict[str, Any]
GROUP, PLURAL = "workloads.x-k8s.io", "rolebasedgroups"


def dependency_order(roles: list[Obj]) -> list[list[Obj]]:
    """SortRoles: roles grouped by depth in the dependency graph (ValueError if a
    dependency is missing or circular)."""
    by_name = {r["name"]: r for r in roles}
    depth: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> int:
        if name in path:
            raise ValueError(f"cycle detected for role '{name}'")
        if name not in depth:
            deps = by_name[name].get("dependencies") or []
            for dep in deps:
                if dep not in by_name:
                    raise ValueError(f"role [{name}] with dependency role [{dep}] not found in rbg")
            depth[name] = max((visit(d, (*path, name)) + 1 for d in deps), default=0)
        return depth[name]

    for name in sorted(by_name):
        visit(name, ())
    levels: list[list[Obj]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in sorted(by_name):
        levels[depth[name]].append(by_name[name])
    return levels


class RoleBasedGroupController(Controller):
    primary = (GROUP, PLURAL)
    owns = (
        ("apps", "statefulsets"),
        ("apps", "deployments"),
        ("leaderworkerset.x-k8s.io", "leaderworkersets"),
        ("", "services"),
    )
    manager = "rbg"
    component = "RoleBasedGroup"

    def reconcile(self, namespace: str, name: str) -> float | None:
        if not self.client.served(GROUP, PLURAL):
            return None
        rbg = self.client.get(GROUP, PLURAL, namespace, name)
        if rbg is None or rbg["metadata"].get("deletionTimestamp"):
            return None
        roles = (rbg.get("spec") or {}).get("roles") or []
        try:
            levels = dependency_order(roles)
        except ValueError as error:
            self.client.event(rbg, "InvalidRoleDependency", str(error), warning=True)
            return None
        statuses: list[Obj] = []
        for level in levels:
            blocked = False
            for role in level:
                status = self._role(rbg, role)
                if status is None:
                    blocked = True
                else:
                    statuses.append(status)
            if blocked:
                return None
        self._cleanup(rbg, roles)
        self._status(rbg, statuses)
        return None

    def _get(self, rbg: Obj, role: Obj) -> Obj | None:
        group, plural, _ = rw.KINDS.get(rw.kind_of(role), rw.KINDS["StatefulSet"])
        if not self.client.served(group, plural):
            return None
        return self.client.get(
            group, plural, rbg["metadata"]["namespace"], rw.workload_name(rbg, role)
        )

    def _role(self, rbg: Obj, role: Obj) -> Obj | None:
        """Reconcile one role's workload; its status, or None when it cannot be yet."""
        roles = {r["name"]: r for r in (rbg.get("spec") or {}).get("roles") or []}
        for dep in role.get("dependencies") or []:
            if not rw.ready(roles[dep], self._get(rbg, roles[dep])):
                self.client.event(
                    rbg,
                    "DependencyNotMet",
                    f"dependencies not met for role '{role['name']}'",
                    warning=True,
                )
                return None
        try:
            wanted = rw.desired(rbg, role)
            group, plural, _ = rw.KINDS[wanted["kind"]]
            if not self.client.served(group, plural):
                raise ValueError(
                    f"{wanted['apiVersion']} {wanted['kind']} is not served (CRD not installed)"
                )
        except ValueError as error:
            self.client.event(
                rbg,
                "FailedReconcileWorkload",
                f"Failed to reconcile role {role['name']}: {error}",
                warning=True,
            )
            return None
        namespace = rbg["metadata"]["namespace"]
        if wanted["kind"] == "StatefulSet" and self.client.get(
            "", "services", namespace, wanted["metadata"]["name"]
        ):
            wanted["spec"]["serviceName"] = wanted["metadata"][
                "name"
            ]  # a Service of the older name
        current = self.client.get(group, plural, namespace, wanted["metadata"]["name"])
        if current is None:
            current = self.client.create(wanted)
        else:
            merged = merged_into(current, wanted)
            if merged != current:
                current = self.client.update(merged)
        if wanted["kind"] == "StatefulSet":
            service = rw.headless_service(rbg, role, current)
            if self.client.get("", "services", namespace, service["metadata"]["name"]) is None:
                self.client.create(service)
        return rw.role_status(role, current)

    def _cleanup(self, rbg: Obj, roles: list[Obj]) -> None:
        wanted = {(rw.kind_of(r), rw.workload_name(rbg, r)) for r in roles}
        for kind, (group, plural, _) in rw.KINDS.items():
            for workload in self.client.owned_by(rbg, group, plural):
                if (kind, workload["metadata"]["name"]) not in wanted:
                    self.client.delete(workload)

    def _status(self, rbg: Obj, statuses: list[Obj]) -> None:
        status = copy.deepcopy(rbg.get("status") or {})
        known = {s["name"]: s for s in status.get("roleStatuses") or []}
        for role_status in statuses:
            known[role_status["name"]] = role_status
        order = [s["name"] for s in status.get("roleStatuses") or []]
        order += [s["name"] for s in statuses if s["name"] not in order]
        status["roleStatuses"] = [known[name] for name in order]
        if all(s["readyReplicas"] == s["replicas"] for s in statuses):
            set_condition(
                status, "Ready", "True", "AllRolesReady", "All roles are ready", update_time=False
            )
        else:
            set_condition(
                status, "Ready", "False", "RoleNotReady", "Not all role ready", update_time=False
            )
        if status != rbg.get("status"):
            self.client.update({**rbg, "status": status}, status=True)
