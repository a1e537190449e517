"""The CustomResourceDefinitions of the workload and routing kinds Arks renders, shipped
with the dev cluster so that `arks cluster up` needs nothing beside the clone.

One YAML file per API group, written for Arks (not copies of upstream):

- `leaderworkerset.x-k8s.io.yaml`: LeaderWorkerSet v1;
- `workloads.x-k8s.io.yaml`: RoleBasedGroup and RoleBasedGroupSet v1alpha1;
- `gateway.networking.k8s.io.yaml`: GatewayClass, Gateway, HTTPRoute (v1, v1beta1) and
  ReferenceGrant (v1beta1).

Names, scope, versions, subresources and printer columns are upstream's, so kubectl shows
what it shows on a real cluster; the schemas cover the fields Arks renders and every
status, with upstream's types, enums, defaults and key CEL rules, and keep whatever else
an object holds (`x-kubernetes-preserve-unknown-fields`). Each file is a CRD manifest that
`kubectl apply -f` takes as it is: one document per CRD (a `List` would make kubectl ask
for /openapi/v2, which the dev cluster does not serve); YAML anchors share parts within a
document.

Failure modes: none at run time beyond a broken installation (a missing or malformed data
file raises). The conformance tests (`devcluster/tests/test_bundled_crds_conformance.py`)
check the schemas are a subset of the upstream CRDs in `../shared/upstream/` and that the
objects Arks renders validate against the full ones.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml

Obj = dict[str, Any]

FILES = (
    "leaderworkerset.x-k8s.io.yaml",
    "workloads.x-k8s.io.yaml",
    "gateway.networking.k8s.io.yaml",
)


@cache
def _serialised() -> tuple[str, ...]:
    # Parsed once; each call decodes fresh objects (YAML aliases would otherwise share
    # dicts between versions and kinds, and a caller's change would leak into others).
    package = resources.files(__name__)
    found: list[str] = []
    for name in FILES:
        text = package.joinpath(name).read_text(encoding="utf-8")
        found += [json.dumps(crd) for crd in yaml.safe_load_all(text) if crd]
    return tuple(found)


def bundled_crds() -> list[Obj]:
    """The bundled CRDs (apiextensions.k8s.io/v1 objects), fresh copies on every call."""
    return [json.loads(crd) for crd in _serialised()]


__all__ = ["FILES", "bundled_crds"]
