"""The dev cluster's nodes, scheduler and kubelet (docs/dev-cluster.md, "Nodes, scheduler
and kubelet").

    config = load_config(path)        # None: one 8-GPU node, engine-sim runnable
    kubelet = Kubelet(api, config, workdir)
    await kubelet.run()               # until cancelled; stops every process it started

Modules: `config` and `config_file` (the YAML file), `nodes`, `scheduler` and `fit`,
`kubelet` (the pod workers' owner), `pods` (one pod), `containers`, `host`, `pulls`,
`container_state`, `probing`, `probes`, `launch`, `environment`, `volumes`,
`processes`, `addresses` (pod IPs), `images`, `pod_status`, `quantities`, `logs`
(`kubectl logs`), `testing` (helpers for tests).
"""

from arks_devcluster.kubelet.config import (
    ClusterConfig,
    ConfigError,
    ImageRule,
    NodeConfig,
    default_config,
)
from arks_devcluster.kubelet.config_file import load_config, parse_config
from arks_devcluster.kubelet.kubelet import Kubelet

__all__ = [
    "ClusterConfig",
    "ConfigError",
    "ImageRule",
    "Kubelet",
    "NodeConfig",
    "default_config",
    "load_config",
    "parse_config",
]
