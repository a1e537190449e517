"""Names over Kubernetes limits, found before anything is applied (Precheck `NameTooLong`).

Object names are DNS subdomains (at most 253 characters); Services are DNS labels (63);
label values are at most 63 characters, and the application's and the model's names are
label values on every pod (`arks.ai/application`, `arks.ai/model`). A LeaderWorkerSet's
name is a label value too (LWS labels its pods with it) and names its pods
`<lws>-<group>`. The download Job's name is shortened with a hash instead (`models`).
"""

from __future__ import annotations

from arks_common import resources
from arks_reconciler import plans
from arks_reconciler.kube import objects
from arks_reconciler.plans import WorkloadPlan

Named = WorkloadPlan | resources.ArksApplication | resources.ArksDisaggregatedApplication
NamedOrOther = Named | resources.ArksModel | resources.ArksEndpoint


def _too_long(what: str, value: str, limit: int) -> list[str]:
    if len(value) <= limit:
        return []
    return [f"{what} {value!r} is {len(value)} characters long; Kubernetes allows {limit}"]


def _application(name: str, model: str | None, roles: list[str]) -> list[str]:
    found = _too_long(
        f"the Service name ({plans.SERVICE_PREFIX}<application>)",
        plans.service_name(name),
        objects.MAX_LABEL_VALUE,
    )
    found += _too_long("the application name (label arks.ai/application)", name, 63)
    for role in roles:
        found += _too_long(f"the {role} workload name", f"{name}-{role}", objects.MAX_LABEL_VALUE)
    if model is not None:
        found += _too_long("the model name (label arks.ai/model)", model, 63)
    return found


def name_problems(plan_or_resource: NamedOrOther) -> list[str]:
    """Messages for every name of the object's Kubernetes objects over a limit."""
    item = plan_or_resource
    if isinstance(item, WorkloadPlan):
        roles = [r.role for r in item.roles if r.role != plans.INFERENCE_ROLE]
        return _application(item.ref.name, item.model.name, roles)
    if isinstance(item, resources.ArksApplication):
        return _application(item.name, item.spec.model.name, [])
    if isinstance(item, resources.ArksDisaggregatedApplication):
        roles = [plans.ROUTER_ROLE, plans.PREFILL_ROLE, plans.DECODE_ROLE]
        return _application(item.name, item.spec.model.name, roles)
    if isinstance(item, resources.ArksModel):
        found = _too_long("the model name (label arks.ai/model)", item.name, 63)
        storage = item.spec.storage
        if storage is not None and storage.pvc is not None and storage.pvc.name:
            found += _too_long("storage.pvc.name", storage.pvc.name, objects.MAX_NAME)
        return found
    return _too_long("the HTTPRoute name (the endpoint's)", item.name, objects.MAX_NAME)
