"""Engine command lines: how an application's spec becomes an engine's arguments.

One mapping serves both platforms. The local platform runs `server_args()` as a process
argv; the Kubernetes platform wraps the same flags into upstream's `/bin/bash -c` leader
and worker command lines (`kube_leader_command`, `kube_worker_command`, spec §2.2), so an
application means the same engine flags wherever it runs.

`runtimeCommonArgs` items are appended verbatim; upstream joins them with spaces into a
shell string, so one item may hold several words ("--max-model-len 32768"). For a process
argv each item is split the way that shell would (`shlex.split`), which keeps the two
platforms equivalent. An item that does not parse as shell words raises ValueError.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

KUBE_ENGINE_PORT: Final = 8080
"""Port every engine listens on in a pod (upstream)."""
SGLANG_DIST_PORT: Final = 20000
"""Port of SGLang's multi-node rendezvous on the leader (upstream)."""
VLLM_MULTINODE_SCRIPT: Final = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"


@dataclass(frozen=True)
class EngineArgs:
    """What an engine needs to serve one model, whatever the platform."""

    model_path: str
    served_model_name: str
    port: int
    host: str | None = None
    """Listen address; None keeps the engine's default (vLLM: all interfaces)."""
    tensor_parallel_size: int | None = None
    """None or 0 omits the flag."""
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    """`runtimeCommonArgs`, verbatim."""
    disaggregation_mode: str | None = None
    """SGLang PD role (prefill | decode), for ArksDisaggregatedApplication."""


def split_user_args(items: Sequence[str]) -> list[str]:
    """`runtimeCommonArgs` as argv words, as `bash -c` would split their space-join."""
    words: list[str] = []
    for item in items:
        words.extend(shlex.split(item))
    return words


def _tp(flag: str, size: int | None) -> list[str]:
    return [flag, str(size)] if size else []


def _listen(args: EngineArgs) -> list[str]:
    return (["--host", args.host] if args.host else []) + ["--port", str(args.port)]


def vllm_server_args(
    args: EngineArgs, *, user_args: Sequence[str] | None = None, model_flag: bool = True
) -> list[str]:
    """Flags of vLLM's OpenAI server (upstream: `--port 8080 --model <path> ...`).

    `model_flag=False` leaves the model out, for `vllm serve <path>`: recent vLLM refuses
    `--model` there and wants the path as the positional argument.
    """
    extra = split_user_args(args.extra_args) if user_args is None else list(user_args)
    return [
        *_listen(args),
        *(["--model", args.model_path] if model_flag else []),
        "--served-model-name",
        args.served_model_name,
        *_tp("--tensor-parallel-size", args.tensor_parallel_size),
        *extra,
    ]


@dataclass(frozen=True)
class SglangDistInit:
    """SGLang multi-node flags; on Kubernetes the values are LWS env expansions."""

    address: str
    nnodes: str
    node_rank: str

    def flags(self) -> list[str]:
        return [
            "--dist-init-addr",
            self.address,
            "--nnodes",
            self.nnodes,
            "--node-rank",
            self.node_rank,
        ]


KUBE_SGLANG_DIST = SglangDistInit(
    address=f"$(LWS_LEADER_ADDRESS):{SGLANG_DIST_PORT}",
    nnodes="$(LWS_GROUP_SIZE)",
    node_rank="$(LWS_WORKER_INDEX)",
)


def _has_flag(items: Sequence[str], flag: str) -> bool:
    words = [word for item in items for word in item.split()]
    return any(w == flag or w.startswith(flag + "=") for w in words)


def sglang_server_args(
    args: EngineArgs,
    *,
    dist: SglangDistInit | None = None,
    listen: bool = True,
    user_args: Sequence[str] | None = None,
) -> list[str]:
    """Flags of `sglang.launch_server` (upstream leader order; workers do not listen).

    `--enable-metrics` is added unless the user's arguments mention `enable-metrics`, as
    upstream does. For a PD role the model, name and `--disaggregation-mode` flags are
    added only if the user did not give them (upstream's leader rule).
    """
    extra = split_user_args(args.extra_args) if user_args is None else list(user_args)
    words: list[str] = [*(dist.flags() if dist else []), "--trust-remote-code"]
    if listen:
        words += ["--host", args.host or "0.0.0.0", "--port", str(args.port)]
    if args.disaggregation_mode is None:
        words += ["--model-path", args.model_path, "--served-model-name", args.served_model_name]
        words += _tp("--tp", args.tensor_parallel_size)
        words += extra
    else:
        words += extra
        for flag, value in (
            ("--model-path", args.model_path),
            ("--served-model-name", args.served_model_name),
            ("--disaggregation-mode", args.disaggregation_mode),
        ):
            if not _has_flag(extra, flag):
                words += [flag, value]
    if not any("enable-metrics" in w for w in extra):
        words.append("--enable-metrics")
    return words


def sim_server_args(args: EngineArgs, *, user_args: Sequence[str] | None = None) -> list[str]:
    """Flags of the engine simulator, which takes vLLM's conventions."""
    extra = split_user_args(args.extra_args) if user_args is None else list(user_args)
    return [
        "--model",
        args.model_path,
        "--served-model-name",
        args.served_model_name,
        *_listen(args),
        *_tp("--tensor-parallel-size", args.tensor_parallel_size),
        *extra,
    ]


def server_args(runtime: str, args: EngineArgs) -> list[str]:
    """The flags of a single-process engine of `runtime` (vllm, sglang or sim)."""
    if runtime == "vllm":
        return vllm_server_args(args)
    if runtime == "sglang":
        return sglang_server_args(args)
    if runtime == "sim":
        return sim_server_args(args)
    raise ValueError(f"runtime {runtime!r} has no single-process server")


# --------------------------------------------------------------------------- Kubernetes


def _bash(script: str) -> list[str]:
    return ["/bin/bash", "-c", script]


def _joined_user_args(args: EngineArgs) -> list[str]:
    # Upstream pastes the items into the shell string unchanged.
    return list(args.extra_args)


def _shell(words: Sequence[str]) -> str:
    # Keep $(VAR) expansions (Kubernetes substitutes them before the shell runs) and
    # user arguments as they are; quote only what needs quoting.
    out = []
    for word in words:
        if word.startswith("$(") or "$(" in word:
            out.append(word)
        else:
            out.append(shlex.quote(word))
    return " ".join(out)


def kube_leader_command(runtime: str, args: EngineArgs) -> list[str]:
    """Upstream's leader container command for `runtime` (args.port is the pod port)."""
    user = _joined_user_args(args)
    if runtime == "vllm":
        flags = vllm_server_args(args, user_args=[])
        ray = f"/bin/bash {VLLM_MULTINODE_SCRIPT} leader --ray_cluster_size=$(LWS_GROUP_SIZE)"
        server = _shell(["python3", "-m", "vllm.entrypoints.openai.api_server", *flags])
        return _bash(" ".join([f"{ray}; {server}", *user]).rstrip())
    if runtime == "sglang":
        flags = sglang_server_args(args, dist=KUBE_SGLANG_DIST, user_args=user)
        return _bash(
            _shell(["python3", "-m", "sglang.launch_server"]) + " " + _join_raw(flags, user)
        )
    if runtime == "dynamo":
        return _bash(" ".join(["dynamo run in=http out=dyn://$(LWS_LEADER_ADDRESS)", *user]))
    if runtime == "sim":
        flags = sim_server_args(args, user_args=[])
        return _bash(" ".join([_shell(["arks-engine-sim", *flags]), *user]))
    raise ValueError(f"unknown runtime {runtime!r}")


def kube_worker_command(runtime: str, args: EngineArgs) -> list[str]:
    """Upstream's worker container command for `runtime` (multi-node groups)."""
    user = _joined_user_args(args)
    if runtime == "vllm":
        return _bash(
            f"/bin/bash {VLLM_MULTINODE_SCRIPT} worker --ray_address=$(LWS_LEADER_ADDRESS)"
        )
    if runtime == "sglang":
        flags = sglang_server_args(args, dist=KUBE_SGLANG_DIST, listen=False, user_args=user)
        return _bash(
            _shell(["python3", "-m", "sglang.launch_server"]) + " " + _join_raw(flags, user)
        )
    if runtime == "dynamo":
        head = "dynamo run in=dyn://$(LWS_LEADER_ADDRESS) out=vllm"
        words = [head, shlex.quote(args.model_path), "--model-name"]
        words += [shlex.quote(args.served_model_name), *user]
        return _bash(" ".join(words))
    if runtime == "sim":
        # The simulator serves from the leader alone; its workers hold their place in
        # the group (scheduling, gang scheduling, group restarts) until stopped.
        return _bash("echo 'arks engine-sim worker of $(LWS_LEADER_ADDRESS)'; exec sleep infinity")
    raise ValueError(f"unknown runtime {runtime!r}")


def _join_raw(flags: Sequence[str], user: Sequence[str]) -> str:
    """Shell-join generated flags, leaving the user's items (a sub-sequence) verbatim."""
    pending = list(user)
    out: list[str] = []
    for word in flags:
        if pending and word == pending[0]:
            out.append(pending.pop(0))
        elif word.startswith("$("):
            out.append(word)
        else:
            out.append(shlex.quote(word))
    return " ".join(out)
