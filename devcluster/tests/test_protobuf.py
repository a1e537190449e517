"""Protobuf request bodies: the decoder on bytes built here (a tiny encoder below) and on a
body kubectl 1.32 sent, then kubectl's generators end to end against a served cluster."""

from __future__ import annotations

import base64
import contextlib
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arks_devcluster.proto_messages import KINDS, MESSAGES, SCALARS
from arks_devcluster.protobuf import MAGIC, ProtobufError, UnknownKind, decode

PROTOBUF = "application/vnd.kubernetes.protobuf"


# A tiny encoder of the wire format, as gogo-protobuf writes Kubernetes objects.
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def num(field: int, n: int) -> bytes:
    return varint(field << 3) + varint(n)


def ld(field: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return varint(field << 3 | 2) + varint(len(raw)) + raw


def msg(field: int, *parts: bytes) -> bytes:
    return ld(field, b"".join(parts))


def entry(field: int, key: str, value: bytes | str) -> bytes:
    return msg(field, ld(1, key), ld(2, value))


def envelope(api_version: str, kind: str, *parts: bytes) -> bytes:
    type_meta = msg(1, ld(1, api_version), ld(2, kind))
    return MAGIC + type_meta + msg(2, *parts) + ld(3, "") + ld(4, "")


def meta(name: str, *more: bytes) -> bytes:
    """ObjectMeta as Go writes it: every non-pointer field, empty or not."""
    empty = ld(2, "") + ld(3, "") + ld(4, "") + ld(5, "") + ld(6, "") + num(7, 0) + msg(8)
    return msg(1, ld(1, name), empty, *more)


# `kubectl create deployment sim --image=arks/engine-sim:dev --replicas=3`, as kubectl
# 1.32 sent it (from `-v=9`).
KUBECTL_DEPLOYMENT = bytes.fromhex(
    "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412bf010a1f0a0373696d12001a0022002a"
    "003200380042005a0a0a03617070120373696d128d010803120c0a0a0a03617070120373696d1a730a1c0a00"
    "12001a0022002a003200380042005a0a0a03617070120373696d125312350a0a656e67696e652d73696d1213"
    "61726b732f656e67696e652d73696d3a6465762a0042006a007200800100880100900100a201001a00320042"
    "004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038"
    "001a002200"
)

SIM = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "sim", "labels": {"app": "sim"}},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "sim"}},
        "template": {
            "metadata": {"labels": {"app": "sim"}},
            "spec": {
                "containers": [
                    {"name": "engine-sim", "image": "arks/engine-sim:dev", "resources": {}}
                ]
            },
        },
        "strategy": {},
    },
}


def test_a_body_kubectl_sent_decodes_as_its_json():
    """What `kubectl create deployment --dry-run=client -o json` prints, less the null
    creationTimestamps and the empty status the decoder skips."""
    assert decode(KUBECTL_DEPLOYMENT) == SIM


def test_zero_values_go_as_omitempty_and_pointers_say():
    container = msg(2, ld(1, ""), ld(2, "img"), ld(5, ""), msg(8), num(16, 0))
    pod_spec = msg(2, container, num(11, 0), num(21, 0), num(4, 0), ld(3, ""))
    spec = msg(2, num(1, 0), num(5, 0), msg(3, pod_spec), msg(4, ld(1, "")))
    body = envelope("apps/v1", "Deployment", meta("d", num(10, -5)), spec)
    decoded = decode(body)
    assert decoded["metadata"] == {"name": "d", "deletionGracePeriodSeconds": -5}
    assert decoded["spec"] == {
        "replicas": 0,  # *int32: set, even to 0
        "template": {
            "spec": {
                "containers": [{"name": "", "image": "img", "resources": {}}],
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 0,
            }
        },
        "strategy": {},
    }


def test_unknown_fields_of_every_wire_type_are_skipped():
    fixed64 = varint(97 << 3 | 1) + bytes(8)
    fixed32 = varint(98 << 3 | 5) + bytes(4)
    status = msg(50, num(1, 7), num(2, 3))
    body = envelope("v1", "ConfigMap", meta("c"), num(99, 1), fixed64, fixed32, status)
    assert decode(body) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}


def test_bytes_are_base64_and_maps_of_strings_stay_strings():
    secret = envelope(
        "v1",
        "Secret",
        meta("s"),
        entry(2, "k", b"\x00\xffv"),
        entry(4, "plain", "text"),
        ld(3, "Opaque"),
    )
    decoded = decode(secret)
    assert decoded["data"] == {"k": base64.b64encode(b"\x00\xffv").decode()}
    assert decoded["stringData"] == {"plain": "text"}
    assert decoded["type"] == "Opaque"
    config = decode(envelope("v1", "ConfigMap", meta("c"), entry(2, "a", "b"), entry(3, "z", b"")))
    assert config["data"] == {"a": "b"}
    assert config["binaryData"] == {"z": ""}


def test_int_or_string_quantity_time_and_inlined_structs():
    ports = msg(1, ld(1, "web"), num(3, 80), msg(4, num(1, 0), num(2, 8080), ld(3, "")))
    named = msg(1, num(3, 81), msg(4, num(1, 1), num(2, 0), ld(3, "http")))
    service = decode(envelope("v1", "Service", meta("s"), msg(2, ports, named, ld(4, "NodePort"))))
    assert service["spec"] == {
        "ports": [
            {"name": "web", "port": 80, "targetPort": 8080},
            {"port": 81, "targetPort": "http"},
        ],
        "type": "NodePort",
    }
    ref = msg(3, msg(1, ld(1, "cm")), ld(2, "key"))
    env = msg(7, ld(1, "E"), msg(3, ref))
    limits = entry(1, "cpu", ld(1, "500m")) + msg(1, ld(1, "memory"))
    container = msg(2, ld(1, "c"), env, msg(8, limits))
    job = decode(envelope("batch/v1", "Job", meta("j"), msg(2, msg(6, msg(2, container)))))
    (decoded,) = job["spec"]["template"]["spec"]["containers"]
    assert decoded["env"] == [
        {"name": "E", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "key"}}}
    ]
    assert decoded["resources"] == {"limits": {"cpu": "500m", "memory": "0"}}
    stamp = meta("l", msg(8, num(1, 1_700_000_000)), msg(9))
    lease_spec = msg(2, ld(1, "me"), msg(3, num(1, 1_700_000_000), num(2, 123_456_789)))
    lease = decode(envelope("coordination.k8s.io/v1", "Lease", stamp, lease_spec))
    assert lease["metadata"] == {"name": "l", "creationTimestamp": "2023-11-14T22:13:20Z"}
    assert lease["spec"] == {"holderIdentity": "me", "acquireTime": "2023-11-14T22:13:20.123456Z"}


def test_a_cron_job_decodes_though_the_server_does_not_serve_cron_jobs():
    job_template = msg(5, msg(2, msg(6, msg(2, msg(2, ld(1, "c"), ld(2, "busybox"))))))
    spec = msg(2, ld(1, "*/5 * * * *"), ld(3, ""), job_template)
    decoded = decode(envelope("batch/v1", "CronJob", meta("cj"), spec))
    assert decoded["spec"]["schedule"] == "*/5 * * * *"
    template = decoded["spec"]["jobTemplate"]["spec"]["template"]
    assert template["spec"]["containers"] == [{"name": "c", "image": "busybox"}]


def test_a_kind_not_in_the_table_is_unknown():
    with pytest.raises(UnknownKind) as raised:
        decode(envelope("networking.k8s.io/v1", "Ingress", meta("i")))
    assert raised.value.kind == "Ingress"
    with pytest.raises(UnknownKind):  # a known kind under another apiVersion
        decode(envelope("apps/v1beta1", "Deployment", meta("d")))


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind": "ConfigMap"}',
        MAGIC + b"\x0a\xff",  # typeMeta announces more bytes than follow
        MAGIC + b"\x0a" + b"\xff" * 11,  # a varint longer than ten bytes
        MAGIC + b"\x0b",  # wire type 3 (groups)
        MAGIC + b"\x00\x00",  # field number 0
        envelope("v1", "ConfigMap", meta("c"), ld(4, "true")),  # immutable: not a varint
        envelope("v1", "ConfigMap", msg(1, ld(1, b"\xff\xfe"))),  # a name not UTF-8
        KUBECTL_DEPLOYMENT[:-30],
    ],
)
def test_a_body_that_is_not_well_formed_is_a_protobuf_error(body: bytes):
    with pytest.raises(ProtobufError):
        decode(body)


@given(st.binary(max_size=300))
def test_garbage_never_fails_otherwise(garbage: bytes):
    for body in (MAGIC + garbage, envelope("apps/v1", "Deployment")[:-4] + garbage):
        with contextlib.suppress(ProtobufError, UnknownKind):
            assert isinstance(decode(body), dict)


def test_every_truncation_of_a_real_body_is_an_error_or_an_object():
    for end in range(len(KUBECTL_DEPLOYMENT)):
        with contextlib.suppress(ProtobufError, UnknownKind):
            assert isinstance(decode(KUBECTL_DEPLOYMENT[:end]), dict)


def test_the_table_is_whole():
    for fields in MESSAGES.values():
        for field in fields.values():
            assert field.type in SCALARS or field.type in MESSAGES, field
    for kinds in KINDS.values():
        assert all(kind in MESSAGES for kind in kinds)


# End to end: kubectl's generators against a served cluster.


async def test_kubectl_create_deployment(cluster):
    await cluster.kubectl.check(
        "create", "deployment", "sim", "--image=arks/engine-sim:dev", "--replicas=3"
    )
    got = cluster.api.get("apps/v1", "deployments", "default", "sim")
    assert got["metadata"]["labels"] == {"app": "sim"}
    spec = got["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"] == {"matchLabels": {"app": "sim"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "sim"}
    (container,) = spec["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("engine-sim", "arks/engine-sim:dev")
    await cluster.kubectl.check(
        "create", "deployment", "cmd", "--image=busybox", "--port=8080", "--", "sleep", "9"
    )
    got = cluster.api.get("apps/v1", "deployments", "default", "cmd")
    (container,) = got["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sleep", "9"]
    assert container["ports"] == [{"containerPort": 8080}]


async def test_kubectl_create_configmap_secret_namespace_serviceaccount(cluster):
    kubectl = cluster.kubectl
    await kubectl.check("create", "namespace", "team")
    assert cluster.api.get("v1", "namespaces", "", "team") is not None
    await kubectl.check("create", "configmap", "c", "-n", "team", "--from-literal=a=b")
    assert cluster.api.get("v1", "configmaps", "team", "c")["data"] == {"a": "b"}
    await kubectl.check("create", "secret", "generic", "s", "--from-literal=token=s3cret")
    secret = cluster.api.get("v1", "secrets", "default", "s")
    assert base64.b64decode(secret["data"]["token"]) == b"s3cret"
    await kubectl.check("create", "serviceaccount", "robot")
    assert cluster.api.get("v1", "serviceaccounts", "default", "robot") is not None


async def test_kubectl_create_service(cluster):
    await cluster.kubectl.check("create", "service", "clusterip", "web", "--tcp=80:8080")
    spec = cluster.api.get("v1", "services", "default", "web")["spec"]
    assert spec["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}]
    assert spec["type"] == "ClusterIP"
    assert spec["selector"] == {"app": "web"}
    await cluster.kubectl.check("create", "service", "externalname", "ext", "--external-name=a.b")
    assert cluster.api.get("v1", "services", "default", "ext")["spec"]["externalName"] == "a.b"


async def test_kubectl_create_job(cluster):
    await cluster.kubectl.check("create", "job", "once", "--image=busybox", "--", "echo", "hi")
    spec = cluster.api.get("batch/v1", "jobs", "default", "once")["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container == {
        "name": "once",
        "image": "busybox",
        "command": ["echo", "hi"],
        "resources": {},
    }


async def test_kubectl_create_rbac_and_disruption_budget(cluster):
    kubectl = cluster.kubectl
    await kubectl.check("create", "role", "reader", "--verb=get", "--resource=pods")
    rules = cluster.api.get("rbac.authorization.k8s.io/v1", "roles", "default", "reader")["rules"]
    assert rules == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    await kubectl.check(
        "create", "rolebinding", "read", "--role=reader", "--serviceaccount=default:robot"
    )
    binding = cluster.api.get("rbac.authorization.k8s.io/v1", "rolebindings", "default", "read")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "reader",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "robot", "namespace": "default"}
    ]
    await kubectl.check("create", "clusterrole", "all", "--verb=*", "--resource=*")
    await kubectl.check("create", "clusterrolebinding", "all", "--clusterrole=all", "--group=g")
    cluster_binding = cluster.api.get(
        "rbac.authorization.k8s.io/v1", "clusterrolebindings", "", "all"
    )
    assert cluster_binding["subjects"][0]["name"] == "g"
    await kubectl.check("create", "pdb", "keep", "--selector=app=x", "--min-available=50%")
    pdb = cluster.api.get("policy/v1", "poddisruptionbudgets", "default", "keep")
    assert pdb["spec"] == {"minAvailable": "50%", "selector": {"matchLabels": {"app": "x"}}}


async def test_protobuf_answers_over_http(cluster):
    """The answer is JSON (kubectl accepts it); a kind not decoded is 415 with what to do
    instead; a body that is not well-formed is 400."""
    path = "/api/v1/namespaces/default/configmaps"
    headers = {"Content-Type": PROTOBUF, "Accept": f"{PROTOBUF},application/json"}
    async with httpx.AsyncClient(base_url=cluster.url, headers=headers) as http:
        body = envelope("v1", "ConfigMap", meta("c"), entry(2, "a", "b"))
        created = await http.post(path, content=body)
        assert created.status_code == 201
        assert created.headers["content-type"] == "application/json"
        assert created.json()["data"] == {"a": "b"}
        ingress = envelope("networking.k8s.io/v1", "Ingress", meta("i"))
        refused = await http.post(path, content=ingress)
        assert refused.status_code == 415
        assert refused.json()["reason"] == "UnsupportedMediaType"
        assert "Ingress" in refused.json()["message"]
        assert "kubectl apply -f" in refused.json()["message"]
        for garbage in (b"k8s\x00\x0a\xff", KUBECTL_DEPLOYMENT[:-30], b"{}"):
            bad = await http.post(path, content=garbage)
            assert bad.status_code == 400, bad.text
            assert json.loads(bad.text)["reason"] == "BadRequest"
