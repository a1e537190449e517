"""Engine argument mapping: one mapping, the same flags locally and on Kubernetes."""

from __future__ import annotations

import pytest

from arks_reconciler import commands
from arks_reconciler.commands import EngineArgs


def args(**overrides: object) -> EngineArgs:
    values: dict[str, object] = {
        "model_path": "/models/models/default/qwen",
        "served_model_name": "qwen-7b",
        "port": 8080,
    }
    values.update(overrides)
    return EngineArgs(**values)  # type: ignore[arg-type]


def test_vllm_leader_command_is_upstreams() -> None:
    command = commands.kube_leader_command(
        "vllm", args(tensor_parallel_size=2, extra_args=("--max-model-len 32768",))
    )
    assert command == [
        "/bin/bash",
        "-c",
        "/bin/bash /vllm-workspace/examples/online_serving/multi-node-serving.sh leader "
        "--ray_cluster_size=$(LWS_GROUP_SIZE); python3 -m vllm.entrypoints.openai.api_server "
        "--port 8080 --model /models/models/default/qwen --served-model-name qwen-7b "
        "--tensor-parallel-size 2 --max-model-len 32768",
    ]


def test_vllm_worker_command_is_upstreams() -> None:
    assert commands.kube_worker_command("vllm", args())[2] == (
        "/bin/bash /vllm-workspace/examples/online_serving/multi-node-serving.sh worker "
        "--ray_address=$(LWS_LEADER_ADDRESS)"
    )


def test_sglang_leader_command_is_upstreams_and_adds_metrics() -> None:
    command = commands.kube_leader_command("sglang", args(tensor_parallel_size=4))
    assert command[2] == (
        "python3 -m sglang.launch_server --dist-init-addr $(LWS_LEADER_ADDRESS):20000 "
        "--nnodes $(LWS_GROUP_SIZE) --node-rank $(LWS_WORKER_INDEX) --trust-remote-code "
        "--host 0.0.0.0 --port 8080 --model-path /models/models/default/qwen "
        "--served-model-name qwen-7b --tp 4 --enable-metrics"
    )


def test_sglang_keeps_users_metrics_flag_and_worker_does_not_listen() -> None:
    command = commands.kube_worker_command("sglang", args(extra_args=("--enable-metrics",)))
    assert "--host" not in command[2]
    assert "--port" not in command[2]
    assert command[2].count("enable-metrics") == 1


def test_sglang_pd_role_flags_are_added_unless_given() -> None:
    words = commands.sglang_server_args(
        args(disaggregation_mode="prefill", extra_args=("--model-path /elsewhere",))
    )
    assert words.count("--model-path") == 1
    assert words[words.index("--model-path") + 1] == "/elsewhere"
    assert words[words.index("--disaggregation-mode") + 1] == "prefill"


def test_dynamo_commands_are_upstreams() -> None:
    leader = commands.kube_leader_command("dynamo", args(extra_args=("--x 1",)))
    worker = commands.kube_worker_command("dynamo", args())
    assert leader[2] == "dynamo run in=http out=dyn://$(LWS_LEADER_ADDRESS) --x 1"
    assert worker[2] == (
        "dynamo run in=dyn://$(LWS_LEADER_ADDRESS) out=vllm /models/models/default/qwen "
        "--model-name qwen-7b"
    )


def test_local_process_args_split_user_items_like_the_shell() -> None:
    local = args(host="127.0.0.1", port=31000, extra_args=("--max-model-len 4096", "--dtype=half"))
    assert commands.server_args("vllm", local) == [
        "--host",
        "127.0.0.1",
        "--port",
        "31000",
        "--model",
        "/models/models/default/qwen",
        "--served-model-name",
        "qwen-7b",
        "--max-model-len",
        "4096",
        "--dtype=half",
    ]
    # `vllm serve <path>` refuses --model: the local platform leaves it out.
    assert "--model" not in commands.vllm_server_args(local, model_flag=False)


def test_sim_args_use_vllm_conventions() -> None:
    words = commands.server_args("sim", args(host="127.0.0.1", port=1234, tensor_parallel_size=2))
    assert words == [
        "--model",
        "/models/models/default/qwen",
        "--served-model-name",
        "qwen-7b",
        "--host",
        "127.0.0.1",
        "--port",
        "1234",
        "--tensor-parallel-size",
        "2",
    ]


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="no single-process server"):
        commands.server_args("dynamo", args())
