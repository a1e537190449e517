"""What of `instanceSpec` means something on one machine, and what is refused.

Honoured (per replica process):

- GPUs: `resources.limits` (else `requests`) `nvidia.com/gpu` per replica becomes a
  `CUDA_VISIBLE_DEVICES` assignment from the machine's GPUs (`gpus`). Replicas never
  share a GPU unless the application opts in with the annotation
  `arks.ai/share-gpus: "true"` (its replicas may then share GPUs with other replicas that
  opted in, never with exclusive ones).
- `env` entries with `valueFrom.fieldRef`: `metadata.name` (the replica's name),
  `metadata.namespace`, `status.podIP` / `status.hostIP` (the address replicas listen
  on), `spec.nodeName` (this machine's hostname). `secretKeyRef`, `configMapKeyRef` and
  `resourceFieldRef` cannot be resolved here: refused, unless `optional: true` (then the
  variable is left out, as Kubernetes does with a missing optional key).
- `readinessProbe`, `livenessProbe`, `startupProbe` (`httpGet`, `tcpSocket`, `exec`;
  `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, `failureThreshold`,
  `successThreshold`): see `probing`.

Refused with a Precheck condition (they would change behaviour silently): `runtimeImage`
(the engine runs from this machine's installation), `volumes` / `volumeMounts` (nothing
is mounted: a process sees this machine's filesystem), `initContainers` (nothing would
run them), `grpc` probes. Everything else of `instanceSpec` (scheduling, security
contexts, CPU/memory resources, labels...) has no meaning for a process and is ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from arks_common import resources as arks
from arks_reconciler import commands
from arks_reconciler.platform import Problem

GPU_RESOURCE = "nvidia.com/gpu"
SHARE_GPUS_ANNOTATION = "arks.ai/share-gpus"
FIELD_PATHS = ("metadata.name", "metadata.namespace", "status.podIP", "status.hostIP")
NODE_NAME = "spec.nodeName"
UNSUPPORTED = "NotSupportedLocally"


@dataclass(frozen=True)
class Probe:
    """One probe of a replica; `kind` is http, tcp or exec."""

    kind: str
    path: str = "/"
    port: int | None = None
    """None: the replica's own port."""
    host: str | None = None
    scheme: str = "http"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1


@dataclass(frozen=True)
class LocalSpec:
    """The parts of a role's `instanceSpec` the local platform applies to its replicas."""

    gpus: int = 0
    share_gpus: bool = False
    field_env: tuple[tuple[str, str], ...] = ()
    """(variable, fieldPath) resolved per replica."""
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None

    def fingerprint(self, template_hash: str) -> str:
        """The replica hash: the template's when nothing local is set (so replicas of
        an older reconciler stay up to date), else one that covers these settings too."""
        if self == LocalSpec():
            return template_hash
        blob = orjson.dumps([template_hash, repr(self)])
        return hashlib.sha256(blob).hexdigest()[:12]


def instance_specs(
    resource: arks.ArksApplication | arks.ArksDisaggregatedApplication,
) -> dict[str, tuple[str, arks.InstanceSpec]]:
    """role -> (field path, instanceSpec) of the roles the local platform runs."""
    if isinstance(resource, arks.ArksApplication):
        return {"inference": ("spec.instanceSpec", resource.spec.instance_spec)}
    spec = resource.spec
    return {
        "prefill": ("spec.prefill.instanceSpec", spec.prefill.instance_spec),
        "decode": ("spec.decode.instanceSpec", spec.decode.instance_spec),
    }


def runtime_image_problem(
    resource: arks.ArksApplication | arks.ArksDisaggregatedApplication,
) -> Problem | None:
    if not resource.spec.runtime_image:
        return None
    return Problem(
        UNSUPPORTED,
        "spec.runtimeImage is not used on the local platform: the engine runs from this "
        "machine's installation; remove it or use the kubernetes platform",
    )


def gpu_count(instance: arks.InstanceSpec) -> int | Problem:
    """GPUs one replica asks for (limits win over requests, as Kubernetes requires them
    equal for extended resources)."""
    found = instance.resources or {}
    for key in ("limits", "requests"):
        amounts = found.get(key) or {}
        if isinstance(amounts, Mapping) and GPU_RESOURCE in amounts:
            value = amounts[GPU_RESOURCE]
            try:
                count = int(str(value))
            except ValueError:
                return Problem(
                    "InvalidResources",
                    f"resources.{key}[{GPU_RESOURCE!r}] is {value!r}: give a whole number of GPUs",
                )
            if count < 0:
                return Problem("InvalidResources", f"resources.{key}[{GPU_RESOURCE!r}] < 0")
            return count
    return 0


def share_gpus(resource: arks.ArksApplication | arks.ArksDisaggregatedApplication) -> bool:
    value = resource.metadata.annotations.get(SHARE_GPUS_ANNOTATION, "")
    return value.strip().lower() in ("true", "yes", "1")


def _seconds(probe: Mapping[str, Any], key: str, default: float, minimum: float) -> float:
    value = probe.get(key)
    if value is None:
        return default
    return max(float(value), minimum)


def parse_probe(raw: Mapping[str, Any], where: str) -> Probe | Problem:
    common = {
        "initial_delay": _seconds(raw, "initialDelaySeconds", 0.0, 0.0),
        "period": _seconds(raw, "periodSeconds", 10.0, 0.1),
        "timeout": _seconds(raw, "timeoutSeconds", 1.0, 0.1),
        "failure_threshold": int(_seconds(raw, "failureThreshold", 3, 1)),
        "success_threshold": int(_seconds(raw, "successThreshold", 1, 1)),
    }
    http, tcp, command = raw.get("httpGet"), raw.get("tcpSocket"), raw.get("exec")
    if isinstance(http, Mapping):
        port = _port(http.get("port"), where)
        if isinstance(port, Problem):
            return port
        headers = tuple(
            (str(h.get("name", "")), str(h.get("value", "")))
            for h in http.get("httpHeaders") or []
            if isinstance(h, Mapping)
        )
        path = str(http.get("path") or "/")
        return Probe(
            kind="http",
            path=path if path.startswith("/") else "/" + path,
            port=port,
            host=http.get("host") or None,
            scheme=str(http.get("scheme") or "HTTP").lower(),
            headers=headers,
            **common,  # type: ignore[arg-type]
        )
    if isinstance(tcp, Mapping):
        port = _port(tcp.get("port"), where)
        if isinstance(port, Problem):
            return port
        return Probe(kind="tcp", port=port, host=tcp.get("host") or None, **common)  # type: ignore[arg-type]
    if isinstance(command, Mapping):
        argv = command.get("command") or []
        if not isinstance(argv, list) or not argv:
            return Problem("InvalidProbe", f"{where}.exec.command: give the command to run")
        return Probe(kind="exec", command=tuple(str(a) for a in argv), **common)  # type: ignore[arg-type]
    if "grpc" in raw:
        return Problem(
            UNSUPPORTED,
            f"{where}: grpc probes are not supported on the local platform (the engines "
            "serve HTTP): use httpGet, tcpSocket or exec",
        )
    return Problem("InvalidProbe", f"{where}: give one of httpGet, tcpSocket or exec")


def _port(value: object, where: str) -> int | Problem | None:
    """None: the replica's own port (the name `http`, or the engine's container port
    on Kubernetes); a number: that port on this machine."""
    if value is None or value == "http":
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        number = int(value)
        return None if number == commands.KUBE_ENGINE_PORT else number
    return Problem(
        "InvalidProbe",
        f"{where}: port {value!r} is not known on the local platform: use `http` (or "
        f"{commands.KUBE_ENGINE_PORT}) for the engine's port, or a port number",
    )


def local_spec(
    instance: arks.InstanceSpec, where: str, *, share: bool
) -> tuple[LocalSpec, list[Problem]]:
    """The local settings of a role and what in its instanceSpec cannot be honoured."""
    problems: list[Problem] = []
    for field, value in (
        ("volumes", instance.volumes),
        ("volumeMounts", instance.volume_mounts),
    ):
        if value:
            problems.append(
                Problem(
                    UNSUPPORTED,
                    f"{where}.{field} is not used on the local platform: a replica is a process "
                    "that sees this machine's filesystem, nothing is mounted; remove it (use "
                    "paths on this machine) or use the kubernetes platform",
                )
            )
    if instance.init_containers:
        problems.append(
            Problem(
                UNSUPPORTED,
                f"{where}.initContainers cannot run on the local platform (replicas are "
                "processes, not pods): remove them or use the kubernetes platform",
            )
        )
    gpus = gpu_count(instance)
    if isinstance(gpus, Problem):
        problems.append(Problem(gpus.reason, f"{where}.{gpus.message}"))
        gpus = 0
    field_env: list[tuple[str, str]] = []
    for entry in instance.env or []:
        name, source = entry.get("name"), entry.get("valueFrom")
        if not isinstance(name, str) or not isinstance(source, Mapping) or "value" in entry:
            continue
        resolved = _value_from(name, source, where)
        if isinstance(resolved, Problem):
            problems.append(resolved)
        elif resolved is not None:
            field_env.append((name, resolved))
    probes: dict[str, Probe | None] = {}
    for key, raw in (
        ("readinessProbe", instance.readiness_probe),
        ("livenessProbe", instance.liveness_probe),
        ("startupProbe", instance.startup_probe),
    ):
        probe = parse_probe(raw, f"{where}.{key}") if isinstance(raw, Mapping) else None
        if isinstance(probe, Problem):
            problems.append(probe)
            probe = None
        probes[key] = probe
    spec = LocalSpec(
        gpus=gpus,
        share_gpus=share and gpus > 0,
        field_env=tuple(field_env),
        readiness=probes["readinessProbe"],
        liveness=probes["livenessProbe"],
        startup=probes["startupProbe"],
    )
    return spec, problems


def _value_from(name: str, source: Mapping[str, Any], where: str) -> str | Problem | None:
    """The fieldPath of a resolvable entry, None for an optional unresolvable one."""
    field_ref = source.get("fieldRef")
    if isinstance(field_ref, Mapping):
        path = str(field_ref.get("fieldPath", ""))
        if path in FIELD_PATHS or path == NODE_NAME:
            return path
        return Problem(
            UNSUPPORTED,
            f"{where}.env {name}: fieldRef {path!r} cannot be resolved on the local platform "
            f"(known: {', '.join((*FIELD_PATHS, NODE_NAME))})",
        )
    for key, what in (("secretKeyRef", "Secrets"), ("configMapKeyRef", "ConfigMaps")):
        ref = source.get(key)
        if isinstance(ref, Mapping):
            if ref.get("optional") is True:
                return None
            return Problem(
                UNSUPPORTED,
                f"{where}.env {name}: {key} cannot be resolved on the local platform (there are "
                f"no {what} here): give the value directly, set it in the reconciler's "
                "ARKS_LOCAL__ENGINE_ENV, mark it optional, or use the kubernetes platform",
            )
    return Problem(
        UNSUPPORTED,
        f"{where}.env {name}: this valueFrom cannot be resolved on the local platform (only "
        "fieldRef is): give the value directly or use the kubernetes platform",
    )


def resolve_field(path: str, *, replica: str, namespace: str, host: str, node: str) -> str:
    return {
        "metadata.name": replica,
        "metadata.namespace": namespace,
        "status.podIP": host,
        "status.hostIP": host,
        NODE_NAME: node,
    }[path]
