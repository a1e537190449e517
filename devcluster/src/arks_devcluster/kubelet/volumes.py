"""Volumes without mount namespaces: each volume is a host directory, and a container's
mount paths are rewritten to it.

- `emptyDir`: `<pod dir>/volumes/<name>`, removed with the pod;
- `persistentVolumeClaim`: `<workdir>/volumes/<namespace>/<claim>`, shared by every pod
  of the claim and kept;
- `configMap`, `secret` (and those sources of `projected`), `downwardAPI`: files written
  into `<pod dir>/volumes/<name>` (`items` and `optional` honoured);
- `hostPath`: the path itself;
- anything else: an empty directory, like emptyDir.

`Mounts.rewrite(text)` replaces every occurrence of a mount path (as a whole path
component: `/models` in `--model=/models/x`, not in `/models2`) by its host directory
(plus `subPath`), longest mount path first; the kubelet applies it to command, args,
env values, workingDir and exec probes. A missing ConfigMap or Secret that is not
optional raises `VolumeError` (the pod waits in ContainerCreating, FailedMount).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arks_devcluster.kubelet.environment import Lookup, field_value, source_values

Obj = dict[str, Any]
_BOUNDARY_AFTER = r"(?=$|[/\s'\";:,=)\]}])"
_BOUNDARY_BEFORE = r"(?<![\w.\-])"


class VolumeError(Exception):
    """A volume cannot be set up yet (FailedMount)."""


@dataclass
class Mounts:
    paths: list[tuple[str, str]] = field(default_factory=list)
    """(mount path, host path), longest mount path first."""

    def __post_init__(self) -> None:
        self.paths.sort(key=lambda pair: -len(pair[0]))
        table = dict(self.paths)
        self._replace: Callable[[str], str] = lambda text: text
        if self.paths:
            pattern = re.compile(
                _BOUNDARY_BEFORE
                + "("
                + "|".join(re.escape(p) for p, _ in self.paths)
                + ")"
                + _BOUNDARY_AFTER
            )
            self._replace = lambda text: pattern.sub(lambda m: table[m.group(1)], text)

    def rewrite(self, text: str) -> str:
        return self._replace(text)

    def host_path(self, path: str) -> str | None:
        """The host path of a container path under a mount, or None."""
        for mount, host in self.paths:
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                return host + path[len(mount.rstrip("/")) :]
        return None


def _write_files(target: Path, values: dict[str, str], items: list[Obj] | None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    chosen = (
        [(i["key"], i.get("path") or i["key"]) for i in items if i.get("key") in values]
        if items
        else [(k, k) for k in values]
    )
    for key, relative in chosen:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(values[key])


def _source(
    lookup: Lookup, namespace: str, plural: str, name: str, optional: bool, volume: str
) -> dict[str, str]:
    values = source_values(lookup, namespace, plural, name)
    if values is None:
        if optional:
            return {}
        kind = "configmap" if plural == "configmaps" else "secret"
        raise VolumeError(
            f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found'
        )
    return values


def prepare(pod: Obj, pod_dir: Path, workdir: Path, lookup: Lookup) -> dict[str, Path]:
    """Make (or refresh) every volume of the pod: volume name → host directory."""
    namespace = pod["metadata"]["namespace"]
    out: dict[str, Path] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume["name"]
        local = pod_dir / "volumes" / name
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"].get("claimName", name)
            local = workdir / "volumes" / namespace / claim
            local.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in volume:
            local = Path(volume["hostPath"].get("path", "/"))
            if volume["hostPath"].get("type") == "DirectoryOrCreate":
                local.mkdir(parents=True, exist_ok=True)
        elif "configMap" in volume or "secret" in volume:
            ref = volume.get("configMap") or volume.get("secret") or {}
            plural = "configmaps" if "configMap" in volume else "secrets"
            source_name = ref.get("name") or ref.get("secretName") or ""
            values = _source(
                lookup, namespace, plural, source_name, bool(ref.get("optional")), name
            )
            _write_files(local, values, ref.get("items"))
        elif "projected" in volume:
            local.mkdir(parents=True, exist_ok=True)
            for source in volume["projected"].get("sources") or []:
                for key, plural in (("configMap", "configmaps"), ("secret", "secrets")):
                    if key in source:
                        ref = source[key]
                        values = _source(
                            lookup,
                            namespace,
                            plural,
                            ref.get("name", ""),
                            bool(ref.get("optional")),
                            name,
                        )
                        _write_files(local, values, ref.get("items"))
        elif "downwardAPI" in volume:
            items = volume["downwardAPI"].get("items") or []
            values = {
                i["path"]: field_value(pod, i["fieldRef"]["fieldPath"])
                for i in items
                if "fieldRef" in i
            }
            _write_files(local, values, None)
        else:
            local.mkdir(parents=True, exist_ok=True)
        out[name] = local
    return out


def mounts_for(container: Obj, volumes: dict[str, Path], extra: list[tuple[str, str]]) -> Mounts:
    """The rewrites of a container: its volumeMounts (with subPath) and `extra` pairs."""
    pairs = list(extra)
    for mount in container.get("volumeMounts") or []:
        host = volumes.get(mount.get("name", ""))
        if host is None or not mount.get("mountPath"):
            continue
        if mount.get("subPath"):
            host = host / mount["subPath"]
            if not host.exists():
                host.mkdir(parents=True, exist_ok=True)
        pairs.append((str(mount["mountPath"]).rstrip("/") or "/", str(host)))
    return Mounts(pairs)
