"""Object metadata every rendered object shares: name, namespace, labels, owner.

Rendered objects are sent by server-side apply, so they hold only the fields Arks owns:
apiVersion, kind, metadata (name, namespace, labels, annotations, ownerReferences) and
spec. Nothing the API server defaults and no status.
"""

from __future__ import annotations

from arks_reconciler.kube import objects
from arks_reconciler.kube.objects import Obj
from arks_reconciler.plans import WorkloadPlan


def obj(
    api_version: str,
    kind: str,
    name: str,
    namespace: str,
    *,
    labels: dict[str, str],
    owner: Obj | None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    """The head of an object: apiVersion, kind and metadata (labels get managed-by)."""
    metadata: Obj = {
        "name": name,
        "namespace": namespace,
        "labels": objects.managed_labels(**labels),
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def app_labels(plan: WorkloadPlan) -> dict[str, str]:
    """`arks.ai/application` and `arks.ai/model` of an application's objects."""
    return {objects.APPLICATION_LABEL: plan.ref.name, objects.MODEL_LABEL: plan.model.name}


def app_owner(plan: WorkloadPlan) -> Obj:
    """The controller ownerReference to the application of `plan`."""
    return objects.owner_reference(plan.ref.kind, plan.ref.name, plan.uid)


def app_object(plan: WorkloadPlan, api_version: str, kind: str, name: str) -> Obj:
    """An object of an application: its namespace, its labels, owned by it."""
    return obj(
        api_version,
        kind,
        name,
        plan.ref.namespace,
        labels=app_labels(plan),
        owner=app_owner(plan),
    )
