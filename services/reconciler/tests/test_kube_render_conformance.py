"""Conformance of the Kubernetes renderers against ../shared (run by `make conformance`).

- Every custom object the renderers produce (LeaderWorkerSet, RoleBasedGroup, HTTPRoute,
  ReferenceGrant) — the goldens of test_kube_render.py plus objects rendered from
  upstream Arks' quickstart samples with every driver — is admitted by a dev-cluster API
  server holding the FULL upstream CRDs (../shared/upstream/{lws,rbg,gateway-api}):
  structural schema, defaults, formats and the CEL rules (`x-kubernetes-validations`).
- The quickstart's built-in objects validate strictly with kubernetes-validate.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from arks_common import resources
from arks_devcluster import FakeKubeApi
from arks_devcluster.errors import ApiError
from arks_reconciler import plans
from arks_reconciler.kube.render import http_route, model_objects, workload_objects
from arks_reconciler.settings import KubeImages

pytestmark = pytest.mark.conformance

Obj = dict[str, Any]
GOLDENS = Path(__file__).parent / "goldens" / "kube"
CUSTOM = {"LeaderWorkerSet", "RoleBasedGroup", "HTTPRoute", "ReferenceGrant"}
UPSTREAM = ("lws", "rbg", "gateway-api")


@cache
def _crds(shared: Path) -> tuple[Obj, ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: list[Obj] = []
    for directory in UPSTREAM:
        for path in sorted((shared / "upstream" / directory).glob("*.yaml")):
            found += [d for d in yaml.load_all(path.read_text(), Loader=loader) if d]
    return tuple(found)


@pytest.fixture
def api(shared_reference: Path) -> FakeKubeApi:
    """An API server with the full upstream LWS, RBG and Gateway API CRDs."""
    return FakeKubeApi(crds=list(_crds(shared_reference)))


def _golden_objects() -> list[tuple[str, Obj]]:
    out = []
    for path in sorted(GOLDENS.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj["kind"] in CUSTOM:
                out.append((f"{path.stem}/{obj['kind']}/{obj['metadata']['name']}", obj))
    return out


GOLDEN_OBJECTS = _golden_objects()


def test_the_goldens_hold_every_custom_kind() -> None:
    assert {obj["kind"] for _, obj in GOLDEN_OBJECTS} == CUSTOM


@pytest.mark.parametrize(("name", "obj"), GOLDEN_OBJECTS, ids=[n for n, _ in GOLDEN_OBJECTS])
def test_golden_custom_objects_are_admitted_by_the_upstream_crds(
    api: FakeKubeApi, name: str, obj: Obj
) -> None:
    stored = api.create(obj)
    # The API server keeps what we sent (nothing pruned), adding only its defaults.
    assert _contains(stored["spec"], obj["spec"]), name


def test_the_upstream_crds_refuse_a_broken_route(api: FakeKubeApi) -> None:
    # Guards the test above against validating nothing: a CEL rule of HTTPRoute's path.
    (_, route) = next(item for item in GOLDEN_OBJECTS if item[1]["kind"] == "HTTPRoute")
    route["spec"]["rules"][0]["matches"][0]["path"]["value"] = "/v1//chat"
    with pytest.raises(ApiError):
        api.create(route)


def _contains(big: Any, small: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and _contains(big[k], v) for k, v in small.items()
        )
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(big) == len(small)
            and all(_contains(b, s) for b, s in zip(big, small, strict=True))
        )
    return bool(big == small)


# ----------------------------------------------------------------------------- quickstart


def _quickstart(shared: Path) -> dict[str, Obj]:
    docs = [
        d
        for d in yaml.safe_load_all((shared / "upstream" / "arks" / "quickstart.yaml").read_text())
        if d
    ]
    return {d["kind"]: d for d in docs}


def test_the_upstream_quickstart_renders_to_objects_the_api_accepts(
    api: FakeKubeApi, shared_reference: Path
) -> None:
    samples = _quickstart(shared_reference)
    model = resources.ArksModel.model_validate(samples["ArksModel"])
    app = resources.ArksApplication.model_validate(samples["ArksApplication"])
    endpoint = resources.ArksEndpoint.model_validate(samples["ArksEndpoint"])
    images = KubeImages()
    plan = plans.application_plan(app, model)
    rendered: list[Obj] = []
    for driver in ("lws", "rbg"):
        objs = workload_objects(plan, driver=driver, images=images)
        assert [o["kind"] for o in objs][-1] == "Service"
        rendered += objs
    made = model_objects(model, images=images, uid="u-model")
    assert made.pvc is not None
    assert made.pvc["spec"] == samples["ArksModel"]["spec"]["storage"]["pvc"]["spec"]
    assert made.job is not None
    rendered += [made.pvc, made.job]
    rendered += http_route(
        endpoint, router_service=("arks-system", "arks-router", 8080), uid="u-ep"
    )
    kinds = set()
    version = latest_version()
    for obj in rendered:
        kinds.add(obj["kind"])
        if obj["kind"] in CUSTOM:
            api.create(obj)
        else:
            kubernetes_validate.validate(obj, version, strict=True)
    assert kinds == {
        "LeaderWorkerSet",
        "RoleBasedGroup",
        "Service",
        "PersistentVolumeClaim",
        "Job",
        "HTTPRoute",
        "ReferenceGrant",
    }
