"""The simulator's typed settings: every vLLM-compatible option and every knob of the
latency model, faults and metrics, each settable by flag or `ARKS_SIM_<NAME>` env var.

Field names are the flag names with `_` for `-` (`max_num_seqs` is `--max-num-seqs` and
`ARKS_SIM_MAX_NUM_SEQS`). Fields named after vLLM options keep vLLM's meaning so a
reconciler can pass the same runtime arguments to either. Invalid values fail
validation at start-up (pydantic), never later.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ARKS_SIM_"

MetricsStyle = Literal["vllm", "sglang", "both"]
LoadingBehaviour = Literal["unavailable", "refuse"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class SimSettings(BaseSettings):
    """Everything the simulator can be told; see docs/engine-sim.md for the model."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        validate_default=True,
        frozen=True,
    )

    # -- vLLM-compatible options -------------------------------------------------------
    model: str = Field(
        "arks-sim",
        description="Model name or local directory; a directory supplies tokenizer.json "
        "and config.json (max_position_embeddings) when present.",
    )
    served_model_name: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Names accepted in requests' `model`; the first labels metrics. "
        "Default: --model. Env: comma-separated.",
    )
    tokenizer: str | None = Field(
        None, description="Directory or tokenizer.json to count tokens with (default: --model)."
    )
    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0: any free port).")
    api_key: str | None = Field(
        None, description="When set, /v1/* requires `Authorization: Bearer <key>` (as vLLM)."
    )
    uvicorn_log_level: LogLevel = Field("info", description="Log level of the server.")
    max_num_seqs: int = Field(256, ge=1, description="Most sequences in one batch.")
    max_model_len: int | None = Field(
        None,
        ge=2,
        description="Context length (prompt + output). Default: config.json's "
        "max_position_embeddings, else 8192.",
    )
    max_num_batched_tokens: int = Field(
        8192, ge=1, description="Token budget of one engine step (chunked prefill)."
    )
    block_size: int = Field(16, ge=1, description="Tokens per KV-cache block.")
    num_gpu_blocks_override: int | None = Field(
        None, ge=1, description="KV-cache blocks in total (default: kv_blocks_per_gpu x TP)."
    )
    enable_prefix_caching: bool = Field(
        True, description="Reuse cached KV blocks of identical prompt prefixes."
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="Simulated GPUs: scales compute speed and KV capacity."
    )
    seed: int = Field(0, description="Seed of the simulator's own randomness.")
    enable_auto_tool_choice: bool = Field(
        False,
        description="Allow `tool_choice: auto` (the default when `tools` are given); "
        "requires --tool-call-parser, as in vLLM.",
    )
    tool_call_parser: str | None = Field(
        None,
        description="Name of vLLM's tool-call parser (hermes, llama3_json, ...); any name is "
        "accepted, the simulator emits tool calls directly.",
    )
    max_logprobs: int = Field(
        20, ge=0, description="Most log probabilities a request may ask for per token."
    )

    # -- latency model -----------------------------------------------------------------
    time_scale: float = Field(
        1.0, gt=0, description="Run this many times faster than real time (all modelled times)."
    )
    step_base_ms: float = Field(8.0, ge=0, description="Fixed cost of one engine step.")
    decode_ms_per_seq: float = Field(
        0.08, ge=0, description="Extra step time per sequence decoding in the batch."
    )
    prefill_ms_per_token: float = Field(
        0.05, ge=0, description="Extra step time per uncached prompt token prefilled."
    )
    step_jitter: float = Field(
        0.0, ge=0, le=1, description="Gaussian noise on each step time (relative std dev)."
    )
    tp_efficiency: float = Field(
        0.75,
        gt=0,
        le=1,
        description="Each extra TP rank adds this much speed: compute / (1 + (TP-1) x eff).",
    )
    kv_blocks_per_gpu: int = Field(8192, ge=1, description="KV blocks per simulated GPU.")
    output_len_min: int = Field(
        16, ge=1, description="Shortest natural answer (tokens) before end-of-sequence."
    )
    output_len_max: int = Field(
        512, ge=1, description="Longest natural answer (tokens) before end-of-sequence."
    )
    embedding_dim: int = Field(384, ge=1, description="Length of /v1/embeddings vectors.")
    tool_call_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Under `tool_choice: auto`, the fraction of answers to a user turn that "
        "call tools (after a tool result the model answers in text).",
    )

    # -- start-up ----------------------------------------------------------------------
    startup_delay: float = Field(
        0.0, ge=0, description="Seconds of simulated model loading (scaled by time_scale)."
    )
    startup_read_model_dir: bool = Field(
        False, description="Also read every file under the model directory while loading."
    )
    while_loading: LoadingBehaviour = Field(
        "unavailable",
        description="unavailable: listen at once and answer 503 until loaded; "
        "refuse: do not listen until loaded.",
    )
    shutdown_timeout: float = Field(
        30.0, gt=0, description="Seconds to let in-flight requests finish after SIGTERM."
    )

    # -- metrics -----------------------------------------------------------------------
    metrics_style: MetricsStyle = Field(
        "vllm", description="Names on /metrics: vllm, sglang or both."
    )

    # -- faults ------------------------------------------------------------------------
    fault_error_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of inference requests answered with an error."
    )
    fault_error_status: int = Field(
        500, ge=400, le=599, description="HTTP status of injected errors."
    )
    fault_spike_rate: float = Field(
        0.0, ge=0, le=1, description="Probability that an engine step stalls (latency spike)."
    )
    fault_spike_ms: float = Field(500.0, ge=0, description="Length of one stall.")
    fault_hang_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of requests that stop progressing (hang)."
    )
    fault_hang_after_tokens: int = Field(
        0, ge=0, description="Tokens a hanging request emits before it hangs."
    )
    fault_crash_after: int | None = Field(
        None, ge=0, description="Exit the process after answering this many requests."
    )
    fault_crash_exit_code: int = Field(1, ge=1, le=255, description="Exit code of that crash.")

    @field_validator("served_model_name", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [name for name in value.replace(",", " ").split() if name]
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> SimSettings:
        if self.output_len_min > self.output_len_max:
            raise ValueError("output_len_min must not exceed output_len_max")
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            # vLLM refuses to start with this combination too.
            raise ValueError("--enable-auto-tool-choice requires --tool-call-parser")
        return self

    @property
    def model_names(self) -> list[str]:
        return list(self.served_model_name) or [self.model]

    @property
    def num_kv_blocks(self) -> int:
        if self.num_gpu_blocks_override is not None:
            return self.num_gpu_blocks_override
        return self.kv_blocks_per_gpu * self.tensor_parallel_size

    @property
    def speedup(self) -> float:
        """How much faster than one GPU the simulated tensor-parallel group computes."""
        return 1.0 + (self.tensor_parallel_size - 1) * self.tp_efficiency
