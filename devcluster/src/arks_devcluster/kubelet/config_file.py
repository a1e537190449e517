"""Reading and validating the cluster config file (format: see `config`).

`load_config(None)` is the built-in default; a path is read as YAML, and every section
left out takes the default's. Unknown fields, wrong types, quantities that do not parse,
duplicate node names and image rules with neither `run` nor `simulate` raise
`ConfigError` with the file and the field (`nodes[0].memory: not a quantity: 'lots'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from arks_devcluster.kubelet.config import (
    ClusterConfig,
    ConfigError,
    ImageRule,
    NodeConfig,
    default_config,
)
from arks_devcluster.kubelet.quantities import parse_quantity

_TOP = {"nodes", "images", "backoff_scale", "probe_period_cap", "grace_period_cap"}
_NODE = {"name", "labels", "taints", "gpus", "cpu", "memory", "pods"}
_RUN = {"command", "args", "env", "host_env", "host_flag"}
_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}


def load_config(path: Path | None) -> ClusterConfig:
    """The config in `path` (YAML), or the default one for None."""
    if path is None:
        return default_config()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return parse_config(data if data is not None else {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def parse_config(data: Any) -> ClusterConfig:
    """A config from its parsed YAML (a mapping); missing sections take the defaults."""
    _mapping(data, "the config", _TOP)
    default = default_config()
    nodes = default.nodes
    if "nodes" in data:
        nodes = tuple(_node(n, f"nodes[{i}]") for i, n in enumerate(_list(data["nodes"], "nodes")))
        if not nodes:
            raise ConfigError("nodes: at least one node is needed")
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise ConfigError("nodes: names must be unique")
    images = default.images
    if "images" in data:
        listed = _list(data["images"], "images")
        images = tuple(_rule(r, f"images[{i}]") for i, r in enumerate(listed))
    knobs = {k: _number(data[k], k) for k in _TOP - {"nodes", "images"} if k in data}
    return ClusterConfig(nodes, images, **knobs)


def _node(data: Any, where: str) -> NodeConfig:
    _mapping(data, where, _NODE)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: a non-empty string is required")
    labels = _strings(data.get("labels") or {}, f"{where}.labels")
    taints = []
    for i, taint in enumerate(_list(data.get("taints") or [], f"{where}.taints")):
        spot = f"{where}.taints[{i}]"
        _mapping(taint, spot, {"key", "value", "effect"})
        if not taint.get("key") or taint.get("effect") not in _EFFECTS:
            raise ConfigError(f"{spot}: needs a key and an effect in {sorted(_EFFECTS)}")
        taints.append({k: str(v) for k, v in taint.items() if v is not None})
    for quantity in ("cpu", "memory"):
        if quantity in data:
            try:
                parse_quantity(data[quantity])
            except ValueError as exc:
                raise ConfigError(f"{where}.{quantity}: {exc}") from exc
    return NodeConfig(
        name,
        labels,
        tuple(taints),
        gpus=_count(data.get("gpus", 0), f"{where}.gpus"),
        cpu=str(data.get("cpu", "64")),
        memory=str(data.get("memory", "512Gi")),
        pods=_count(data.get("pods", 110), f"{where}.pods"),
    )


def _rule(data: Any, where: str) -> ImageRule:
    _mapping(data, where, {"image", "run", "simulate"})
    image = data.get("image")
    if not isinstance(image, str) or not image:
        raise ConfigError(f"{where}.image: a non-empty string is required")
    simulate = data.get("simulate", False)
    if not isinstance(simulate, bool):
        raise ConfigError(f"{where}.simulate: true or false")
    if simulate == ("run" in data):
        raise ConfigError(f"{where}: give either `run` or `simulate: true`")
    if simulate:
        return ImageRule(image, simulate=True)
    run = data["run"]
    _mapping(run, f"{where}.run", _RUN)
    command = _words(run.get("command") or [], f"{where}.run.command")
    if not command:
        raise ConfigError(f"{where}.run.command: the entrypoint is required")
    return ImageRule(
        image,
        command=command,
        args=_words(run.get("args") or [], f"{where}.run.args"),
        env=_strings(run.get("env") or {}, f"{where}.run.env"),
        host_env=_words(run.get("host_env") or [], f"{where}.run.host_env"),
        host_flag=_words(run.get("host_flag") or [], f"{where}.run.host_flag"),
    )


def _mapping(data: Any, where: str, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a mapping is required")
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _list(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise ConfigError(f"{where}: a list is required")
    return data


def _words(data: Any, where: str) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(isinstance(w, str | int | float) for w in data):
        raise ConfigError(f"{where}: a list of strings is required")
    return tuple(str(w) for w in data)


def _strings(data: Any, where: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a mapping of strings is required")
    return {str(k): "" if v is None else str(v) for k, v in data.items()}


def _count(data: Any, where: str) -> int:
    if isinstance(data, bool) or not isinstance(data, int) or data < 0:
        raise ConfigError(f"{where}: a whole number >= 0 is required")
    return data


def _number(data: Any, where: str) -> float:
    if isinstance(data, bool) or not isinstance(data, int | float) or data <= 0:
        raise ConfigError(f"{where}: a number > 0 is required")
    return float(data)
