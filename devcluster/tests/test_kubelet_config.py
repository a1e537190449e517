"""The cluster config file, image rules, quantities and launch arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from arks_devcluster.kubelet import ConfigError, ImageRule, load_config
from arks_devcluster.kubelet.environment import expand
from arks_devcluster.kubelet.images import image_id, qualified, rule_for
from arks_devcluster.kubelet.launch import command_line, replace_host_flags
from arks_devcluster.kubelet.quantities import parse_quantity, pod_requests, qos_class
from arks_devcluster.kubelet.volumes import Mounts

EXAMPLE = """
nodes:
  - name: gpu-a
    labels: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}
    taints: [{key: dedicated, value: gpu, effect: NoSchedule}]
    gpus: 4
    cpu: "32"
    memory: 256Gi
  - name: cpu-a
images:
  - image: busybox
    run: {command: [/bin/sh], args: [-c, "echo hi"], env: {A: "1"}}
  - image: arks/engine-sim
    run: {command: [arks-engine-sim], host_env: [ARKS_SIM_HOST], host_flag: [--host]}
  - image: vllm/vllm-openai
    simulate: true
backoff_scale: 0.5
probe_period_cap: 2
"""


def test_the_default_and_a_file(tmp_path: Path) -> None:
    default = load_config(None)
    (node,) = default.nodes
    assert (node.name, node.gpus, node.cpu, node.memory, node.pods) == (
        "devcluster-node-1",
        8,
        "64",
        "512Gi",
        110,
    )
    assert node.labels == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    sim = rule_for(default.images, "arks/engine-sim:dev")
    assert sim is not None
    assert sim.host_env == ("ARKS_SIM_HOST",)
    assert not sim.simulate
    for image in (
        "vllm/vllm-openai:v0.9",
        "lmsysorg/sglang:latest",
        "nats:2.11-alpine",
        "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.3.0",
        "valkey/valkey:8.1",
        "arks/router:dev",
    ):
        rule = rule_for(default.images, image)
        assert rule is not None, image
        assert rule.simulate, image
    assert rule_for(default.images, "busybox") is None

    path = tmp_path / "cluster.yaml"
    path.write_text(EXAMPLE)
    config = load_config(path)
    assert [n.name for n in config.nodes] == ["gpu-a", "cpu-a"]
    assert config.nodes[0].taints == ({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},)
    assert config.nodes[1].gpus == 0
    assert config.nodes[1].pods == 110
    assert (config.backoff_scale, config.probe_period_cap, config.grace_period_cap) == (
        0.5,
        2.0,
        5.0,
    )
    busybox = rule_for(config.images, "docker.io/library/busybox:1.36")
    assert busybox == ImageRule(
        "busybox", command=("/bin/sh",), args=("-c", "echo hi"), env={"A": "1"}
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes: []", "nodes: at least one node is needed"),
        ("nodes: [{name: a, gpu: 1}]", "nodes[0]: unknown field(s) gpu"),
        ("nodes: [{name: a, memory: lots}]", "nodes[0].memory: not a quantity: 'lots'"),
        (
            "nodes: [{name: a, taints: [{key: k, effect: Never}]}]",
            "nodes[0].taints[0]: needs a key",
        ),
        ("images: [{image: x}]", "images[0]: give either `run` or `simulate: true`"),
        (
            "images: [{image: x, run: {args: [a]}}]",
            "images[0].run.command: the entrypoint is required",
        ),
        ("backoff_scale: 0", "backoff_scale: a number > 0 is required"),
        ("nodes: [{name: a}, {name: a}]", "nodes: names must be unique"),
        ("nodes: {", "cluster.yaml: while parsing"),
    ],
)
def test_invalid_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)


def test_images_quantities_and_commands() -> None:
    assert qualified("nginx") == "docker.io/library/nginx:latest"
    assert qualified("arks/engine-sim:dev") == "docker.io/arks/engine-sim:dev"
    assert qualified("localhost:5000/x:1") == "localhost:5000/x:1"
    assert image_id("nginx").startswith("docker.io/library/nginx@sha256:")
    rules = (ImageRule("nvcr.io/nvidia/ai-dynamo/*", simulate=True),)
    assert rule_for(rules, "nvcr.io/nvidia/ai-dynamo/sglang-runtime:0.3") is not None
    assert rule_for(rules, "nvcr.io/nvidia/other:1") is None

    assert parse_quantity("500m") * 1000 == 500
    assert parse_quantity("512Gi") == 512 * 2**30
    assert parse_quantity("1e3") == 1000
    assert parse_quantity("1.5") * 2 == 3
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity("5 cores")
    spec = {
        "containers": [
            {"resources": {"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "2"}}},
            {"resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "2"}}},
        ],
        "initContainers": [{"resources": {"requests": {"cpu": "4"}}}],
    }
    requests = pod_requests({"spec": spec})
    assert requests["cpu"] == 4
    assert requests["nvidia.com/gpu"] == 2
    assert qos_class({"spec": spec}) == "Burstable"
    guaranteed = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    assert qos_class({"spec": guaranteed}) == "Guaranteed"
    assert qos_class({"spec": {"containers": [{}]}}) == "BestEffort"

    rule = ImageRule("sim", command=("entry",), args=("--default",))
    env = {"PORT": "8000"}
    assert command_line({}, rule, env) == ["entry", "--default"]
    assert command_line({"args": ["--port", "$(PORT)"]}, rule, env) == ["entry", "--port", "8000"]
    assert command_line({"command": ["run"]}, rule, env) == ["run"]
    assert expand("$(PORT) $$(PORT) $(MISSING) $PORT $(", env) == "8000 $(PORT) $(MISSING) $PORT $("
    assert replace_host_flags(
        ["--host", "0.0.0.0", "--host=::", "sh", "serve --host 0.0.0.0 --port 1"],
        ("--host",),
        "127.0.1.9",
    ) == ["--host", "127.0.1.9", "--host=127.0.1.9", "sh", "serve --host 127.0.1.9 --port 1"]
    mounts = Mounts([("/models", "/w/m"), ("/models/cache", "/w/c")])
    assert mounts.rewrite("--model=/models/x /models/cache/y /models2 /data/models") == (
        "--model=/w/m/x /w/c/y /models2 /data/models"
    )
    assert mounts.host_path("/models/cache/z") == "/w/c/z"
    assert mounts.host_path("/elsewhere") is None
