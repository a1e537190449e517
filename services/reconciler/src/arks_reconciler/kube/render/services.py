"""The Service `arks-application-<app>` in front of an application's entry pods.

Port `http` 8080 (the port ArksEndpoints route to). For an ArksApplication it selects the
leader pods only (`arks.ai/application`, `arks.ai/work-load-role: leader`): workers never
serve HTTP. For the disaggregated kind it selects the router pods and targets the
router's own port, so a router `port` other than 8080 still works behind the endpoint's
fixed 8080 (upstream's endpoint hard-codes 8080 while its Service used the router port,
§6.5.7).
"""

from __future__ import annotations

from arks_common import resources
from arks_reconciler import plans
from arks_reconciler.kube import objects
from arks_reconciler.kube.objects import Obj
from arks_reconciler.kube.render import meta
from arks_reconciler.plans import WorkloadPlan


def service(plan: WorkloadPlan) -> Obj:
    """The application's Service."""
    out = meta.app_object(plan, "v1", "Service", plans.service_name(plan.ref.name))
    app = plan.resource
    selector = {objects.APPLICATION_LABEL: plan.ref.name}
    target: int | str = "http"
    if isinstance(app, resources.ArksDisaggregatedApplication):
        selector[objects.PD_ROLE_LABEL] = plans.ROUTER_ROLE
        target = app.spec.router.port
    else:
        selector[objects.WORKLOAD_ROLE_LABEL] = objects.LEADER
    port = {"name": "http", "protocol": "TCP", "port": plans.SERVICE_PORT, "targetPort": target}
    out["spec"] = {"selector": selector, "ports": [port]}
    return out
