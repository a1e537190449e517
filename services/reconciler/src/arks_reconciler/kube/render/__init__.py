"""Pure renderers of the Kubernetes platform: arks.ai objects in, Kubernetes objects out.

No I/O and no clock: the same inputs always give the same objects, which the platform
sends by server-side apply. Only fields Arks owns are rendered (apiVersion, kind,
metadata name/namespace/labels/annotations/ownerReferences, spec), never status or what
the API server defaults. Every object carries `app.kubernetes.io/managed-by: arks` and
a controller ownerReference (but the ReferenceGrant, which lives in another namespace).

- `workload_objects`: an application's workload (LWS, RBG or Deployments), router and
  Service (`workloads`, `engines`, `pods`, `lws`, `rbg`, `deployments`, `router`,
  `services`, `gang`); `driver_problems` says what a driver cannot run.
- `model_objects`: a model's PVC and download Job (`models`); `model_problems`.
- `http_route`: an endpoint's HTTPRoute and ReferenceGrant (`routes`).
- `name_problems`: names over Kubernetes limits (`names`).
"""

from arks_reconciler.kube.render.models import (
    ModelObjects,
    job_name,
    kube_model_path,
    model_objects,
    model_problems,
    pvc_name,
)
from arks_reconciler.kube.render.names import name_problems
from arks_reconciler.kube.render.routes import grant_name, grant_name_of, http_route
from arks_reconciler.kube.render.workloads import (
    driver_problems,
    resolve_driver,
    workload_name,
    workload_objects,
)

__all__ = [
    "ModelObjects",
    "driver_problems",
    "grant_name",
    "grant_name_of",
    "http_route",
    "job_name",
    "kube_model_path",
    "model_objects",
    "model_problems",
    "name_problems",
    "pvc_name",
    "resolve_driver",
    "workload_name",
    "workload_objects",
]
