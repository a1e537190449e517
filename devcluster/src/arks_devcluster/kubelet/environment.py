"""A container's environment as the kubelet builds it, and `$(VAR)` expansion.

Order and precedence as upstream: the image's ENV, then `envFrom` (ConfigMaps and
Secrets, with `prefix`), then `env` in order, each value expanded against what is
defined so far. `valueFrom`: `fieldRef` (metadata.name, namespace, uid, labels and
annotations by key or whole, spec.nodeName, spec.serviceAccountName, status.podIP(s),
status.hostIP(s)), `secretKeyRef` and `configMapKeyRef` (`optional` honoured),
`resourceFieldRef` (requests/limits of cpu, memory or any resource, with `divisor`; a
missing limit is the node's allocatable, as upstream). A missing ConfigMap, Secret or key
that is not optional raises `ContainerConfigError` with the kubelet's message (the
container then waits in CreateContainerConfigError).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from arks_devcluster.kubelet.quantities import parse_quantity

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]
"""(plural, namespace, name) → the object or None"""
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


class ContainerConfigError(Exception):
    """The container cannot be configured yet (CreateContainerConfigError)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)`: replaced when VAR is defined, kept as is otherwise; `$$` is
    a literal `$`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "$" and i + 1 < len(text):
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(env[name] if name in env else text[i : close + 1])
                    i = close + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


def _decoded(secret: Obj) -> dict[str, str]:
    values = {
        k: base64.b64decode(v).decode(errors="replace")
        for k, v in (secret.get("data") or {}).items()
    }
    values.update({k: str(v) for k, v in (secret.get("stringData") or {}).items()})
    return values


def _config_values(config_map: Obj) -> dict[str, str]:
    values = {k: str(v) for k, v in (config_map.get("data") or {}).items()}
    for key, value in (config_map.get("binaryData") or {}).items():
        values[key] = base64.b64decode(value).decode(errors="replace")
    return values


def source_values(lookup: Lookup, namespace: str, plural: str, name: str) -> dict[str, str] | None:
    """The key → value map of a ConfigMap (`configmaps`) or Secret (`secrets`), or None."""
    found = lookup(plural, namespace, name)
    if found is None:
        return None
    return _decoded(found) if plural == "secrets" else _config_values(found)


def field_value(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    subscript = _SUBSCRIPT.match(path)
    if subscript:
        return str((meta.get(subscript.group(1)) or {}).get(subscript.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
    }
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldPath: {path}")
    return str(simple[path] or "")


def resource_value(pod: Obj, container: Obj, ref: Obj, allocatable: Mapping[str, str]) -> str:
    name = ref.get("containerName") or container.get("name")
    spec = pod.get("spec") or {}
    target = next(
        (
            c
            for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
            if c.get("name") == name
        ),
        container,
    )
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    resources = target.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(resource)
    if value is None:
        value = allocatable.get(resource, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1") or parse_quantity("1")
    return str(math.ceil(parse_quantity(value) / divisor))


def container_env(
    pod: Obj,
    container: Obj,
    lookup: Lookup,
    base: Mapping[str, str],
    allocatable: Mapping[str, str],
) -> dict[str, str]:
    """The environment of `container` of `pod` on top of `base` (image ENV and the like)."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for plural, field in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = source.get(field)
            if ref is None:
                continue
            values = source_values(lookup, namespace, plural, ref.get("name", ""))
            if values is None:
                if ref.get("optional"):
                    continue
                kind = "configmap" if plural == "configmaps" else "secret"
                raise ContainerConfigError(f'{kind} "{ref.get("name")}" not found')
            env.update({prefix + k: v for k, v in values.items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        value = _value_from(pod, container, item["valueFrom"], lookup, allocatable)
        if value is not None:
            env[name] = value
    return env


def _value_from(
    pod: Obj, container: Obj, source: Obj, lookup: Lookup, allocatable: Mapping[str, str]
) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"].get("fieldPath", ""))
    if "resourceFieldRef" in source:
        return resource_value(pod, container, source["resourceFieldRef"], allocatable)
    for plural, field, kind in (
        ("configmaps", "configMapKeyRef", "ConfigMap"),
        ("secrets", "secretKeyRef", "Secret"),
    ):
        ref = source.get(field)
        if ref is None:
            continue
        values = source_values(lookup, namespace, plural, ref.get("name", ""))
        optional = bool(ref.get("optional"))
        if values is None:
            if optional:
                return None
            raise ContainerConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
        if ref.get("key") not in values:
            if optional:
                return None
            raise ContainerConfigError(
                f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name')}"
            )
        return values[ref["key"]]
    return None
