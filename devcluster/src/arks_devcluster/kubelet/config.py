"""The dev cluster's nodes and image rules: a YAML file, validated, or a built-in default.

    nodes:
      - name: devcluster-node-1
        labels: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
        taints: [{key: dedicated, value: gpu, effect: NoSchedule}]   # optional
        gpus: 8            # allocatable nvidia.com/gpu
        cpu: "64"          # a quantity
        memory: 512Gi      # a quantity
        pods: 110          # the default
    images:                # the first rule matching a pod's image wins
      - image: arks/engine-sim       # repository: any registry prefix, any tag
        run:
          command: [arks-engine-sim] # the image's ENTRYPOINT, a local executable
          args: []                   # its CMD (default arguments)
          env: {ARKS_SIM_PORT: "8080"}  # its ENV
          host_env: [ARKS_SIM_HOST]  # env variables set to the pod IP
          host_flag: [--host]        # flags whose value becomes the pod IP
      - image: vllm/vllm-openai
        simulate: true               # Running without a process
    backoff_scale: 1.0     # scales restart and image-pull back-offs (tests: 0.01)
    probe_period_cap: 1.0  # longest probe period, seconds
    grace_period_cap: 5.0  # longest termination grace period, seconds

Any image no rule matches fails to pull (ErrImagePull). `config_file` reads and
validates the file; a file that does not parse or validate raises `ConfigError` naming
the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_NODE = "devcluster-node-1"
SIMULATED = (
    "vllm/vllm-openai",
    "lmsysorg/sglang",
    "nvcr.io/nvidia/ai-dynamo/*",
    "nats",
    "valkey/valkey",
    "arks/reconciler",
    "arks/router",
    "arks/accountant",
)


class ConfigError(ValueError):
    """The config file cannot be read or is not valid."""


@dataclass(frozen=True)
class NodeConfig:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    gpus: int = 0
    cpu: str = "64"
    memory: str = "512Gi"
    pods: int = 110


@dataclass(frozen=True)
class ImageRule:
    image: str
    """A repository pattern (`*` matches anything), compared without tag or digest."""
    simulate: bool = False
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    host_env: tuple[str, ...] = ()
    host_flag: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterConfig:
    nodes: tuple[NodeConfig, ...]
    images: tuple[ImageRule, ...]
    backoff_scale: float = 1.0
    probe_period_cap: float = 1.0
    grace_period_cap: float = 5.0


def default_config() -> ClusterConfig:
    node = NodeConfig(
        DEFAULT_NODE,
        labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        gpus=8,
    )
    runnable = (
        ImageRule(
            "arks/engine-sim",
            command=("arks-engine-sim",),
            # the image's ENV (services/engine-sim/Dockerfile): upstream's engine port
            env={"ARKS_SIM_PORT": "8080"},
            host_env=("ARKS_SIM_HOST",),
            host_flag=("--host",),
        ),
        ImageRule(
            "arks/model-cache",
            command=("arks-model-cache",),
            host_env=("ARKS_HEALTH__HOST",),
        ),
    )
    return ClusterConfig((node,), runnable + tuple(ImageRule(i, simulate=True) for i in SIMULATED))
