"""Which program runs a replica of each runtime here, with which arguments and environment.

| runtime | command (override)                                 | found when                      |
|---------|----------------------------------------------------|---------------------------------|
| sim     | arks-engine-sim (ARKS_LOCAL__SIM_COMMAND)          | beside this Python, or on PATH  |
| vllm    | vllm serve <path> (ARKS_LOCAL__VLLM_COMMAND)       | `vllm` beside Python or on PATH |
| sglang  | python -m sglang.launch_server (…SGLANG_COMMAND)   | `sglang` importable here        |

Flags come from `arks_reconciler.commands`, the mapping the Kubernetes platform uses too;
replicas listen on the configured host (127.0.0.1) and a port of their own. A runtime
whose program is missing is a `Problem` naming the program and how to get it, which the
core reports as `Ready=False/RuntimeNotFound` (phase Failed).

Environment: the reconciler's own, then `engine_env`, then for the simulator
`ARKS_SIM_TIME_SCALE` (`sim_time_scale`) and `sim_env`, then the application's plain
`instanceSpec.env` values, then the replica markers (see `processes`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from arks_reconciler import commands
from arks_reconciler.local.processes import REPLICA_NAME_ENV, REPLICA_SCOPE_ENV
from arks_reconciler.plans import ReplicaTemplate
from arks_reconciler.platform import Problem
from arks_reconciler.settings import LocalSettings

RUNTIME_NOT_FOUND = "RuntimeNotFound"


def _program(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


class Engines:
    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings

    def command(self, runtime: str) -> list[str] | Problem:
        """The program (argv prefix) of a runtime, or why it cannot run here."""
        s = self.settings
        if runtime == "sim":
            if s.sim_command:
                return list(s.sim_command)
            found = _program("arks-engine-sim")
            if found:
                return [found]
            return Problem(
                RUNTIME_NOT_FOUND,
                f"runtime sim needs the engine simulator, but `arks-engine-sim` was found "
                f"neither beside {sys.executable} nor on PATH: install the arks-engine-sim "
                "package (uv sync) or set ARKS_LOCAL__SIM_COMMAND",
            )
        if runtime == "vllm":
            if s.vllm_command:
                return list(s.vllm_command)
            found = _program("vllm")
            if found:
                return [found, "serve"]
            return Problem(
                RUNTIME_NOT_FOUND,
                f"runtime vllm needs vLLM, but the `vllm` program was found neither beside "
                f"{sys.executable} nor on PATH: install vllm (on a GPU machine), set "
                "ARKS_LOCAL__VLLM_COMMAND, or use runtime: sim",
            )
        if runtime == "sglang":
            if s.sglang_command:
                return list(s.sglang_command)
            if importlib.util.find_spec("sglang") is not None:
                return [sys.executable, "-m", "sglang.launch_server"]
            return Problem(
                RUNTIME_NOT_FOUND,
                f"runtime sglang needs SGLang, but the `sglang` package is not importable by "
                f"{sys.executable}: install sglang (on a GPU machine), set "
                "ARKS_LOCAL__SGLANG_COMMAND, or use runtime: sim",
            )
        return Problem("RuntimeNotSupport", f"runtime {runtime} cannot run on the local platform")

    def argv(self, prefix: list[str], template: ReplicaTemplate, port: int) -> list[str]:
        args = commands.EngineArgs(
            model_path=template.model_path,
            served_model_name=template.served_model_name,
            port=port,
            host=self.settings.host,
            tensor_parallel_size=template.tensor_parallel_size,
            extra_args=template.extra_args,
        )
        if template.runtime == "vllm" and prefix and prefix[-1] == "serve":
            return [
                *prefix,
                template.model_path,
                *commands.vllm_server_args(args, model_flag=False),
            ]
        return [*prefix, *commands.server_args(template.runtime, args)]

    def env(self, template: ReplicaTemplate, *, name: str, scope: str) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(s.engine_env)
        if template.runtime == "sim":
            if s.sim_time_scale is not None:
                env["ARKS_SIM_TIME_SCALE"] = repr(s.sim_time_scale)
            env.update(s.sim_env)
        env.update(dict(template.env))
        env[REPLICA_NAME_ENV] = name
        env[REPLICA_SCOPE_ENV] = scope
        return env
