"""The command line: vLLM's argument names, env vars, tolerance of unknown flags, exit
codes, and a real model directory (tokenizer.json + config.json) end to end."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from arks_engine_sim import SimSettings, parse_arguments
from arks_engine_sim.arguments import build_parser
from arks_engine_sim.tokenizing import ChatMessage, render_chat


def test_vllm_argument_names_map_to_settings():
    parsed = parse_arguments(
        [
            "--model", "/models/llama",
            "--served-model-name", "llama", "llama-chat",
            "--max-num-seqs", "64",
            "--max_model_len", "4096",
            "--tensor-parallel-size=2",
            "--block-size", "32",
            "--no-enable-prefix-caching",
            "--port", "9000",
            "--time-scale", "10",
            "--metrics-style", "sglang",
        ]
    )  # fmt: skip
    s = parsed.settings
    assert parsed.ignored == []
    assert s.model == "/models/llama"
    assert s.model_names == ["llama", "llama-chat"]
    assert (s.max_num_seqs, s.max_model_len, s.tensor_parallel_size) == (64, 4096, 2)
    assert (s.block_size, s.enable_prefix_caching, s.port) == (32, False, 9000)
    assert (s.time_scale, s.metrics_style) == (10.0, "sglang")
    assert s.num_kv_blocks == 2 * s.kv_blocks_per_gpu


def test_unknown_vllm_flags_are_returned_not_fatal():
    parsed = parse_arguments(
        ["serve", "/models/x", "--dtype", "half", "--enforce-eager", "--max-num-seqs", "8"]
    )
    assert parsed.settings.model == "/models/x"
    assert parsed.settings.max_num_seqs == 8
    assert parsed.ignored == ["--dtype", "half", "--enforce-eager"]
    later = parse_arguments(["--port", "1", "/models/y", "--dtype", "half", "--trust-remote-code"])
    assert later.settings.model == "/models/y"
    assert later.ignored == ["--dtype", "half", "--trust-remote-code"]


def test_env_vars_and_precedence(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ARKS_SIM_TIME_SCALE", "7")
    monkeypatch.setenv("ARKS_SIM_MAX_NUM_SEQS", "3")
    monkeypatch.setenv("ARKS_SIM_SERVED_MODEL_NAME", "a, b")
    monkeypatch.setenv("ARKS_SIM_FAULT_ERROR_RATE", "0.25")
    parsed = parse_arguments(["--max-num-seqs", "5"])
    s = parsed.settings
    assert s.time_scale == 7.0
    assert s.max_num_seqs == 5  # the flag wins over the env var
    assert s.model_names == ["a", "b"]
    assert s.fault_error_rate == 0.25


def test_invalid_values_are_rejected():
    with pytest.raises(ValidationError):
        parse_arguments(["--max-num-seqs", "zero"])
    with pytest.raises(ValidationError):
        parse_arguments(["--time-scale", "0"])
    with pytest.raises(ValidationError):
        SimSettings(output_len_min=10, output_len_max=5)
    with pytest.raises(SystemExit):
        parse_arguments(["--metrics-style", "prometheus"])


def test_tool_call_flags_follow_vllm():
    parsed = parse_arguments(
        [
            "--enable-auto-tool-choice",
            "--tool-call-parser", "hermes",
            "--tool-call-rate", "0.3",
            "--max-logprobs", "5",
            "--chat-template", "/x.jinja",
        ]
    )  # fmt: skip
    s = parsed.settings
    assert (s.enable_auto_tool_choice, s.tool_call_parser) == (True, "hermes")
    assert (s.tool_call_rate, s.max_logprobs) == (0.3, 5)
    assert parsed.ignored == ["--chat-template", "/x.jinja"]
    assert parse_arguments([]).settings.tool_call_rate == 0.5
    # vLLM refuses --enable-auto-tool-choice without a parser, so do we.
    with pytest.raises(ValidationError, match="requires --tool-call-parser"):
        parse_arguments(["--enable-auto-tool-choice"])
    with pytest.raises(ValidationError):
        parse_arguments(["--tool-call-rate", "1.5"])


def test_help_lists_every_setting_with_its_env_var():
    text = " ".join(build_parser().format_help().split())
    for name in SimSettings.model_fields:
        assert "--" + name.replace("_", "-") in text
        assert f"ARKS_SIM_{name.upper()}" in text


async def test_model_directory_end_to_end_and_sigterm(spawn_sim, tiny_model):
    model_dir, tokenizer = tiny_model
    sim = await spawn_sim(
        str(model_dir),
        "--served-model-name", "tiny", "tiny-chat",
        "--dtype", "half",
        "--gpu-memory-utilization", "0.9",
        "--time-scale", "20",
    )  # fmt: skip
    await sim.wait_healthy()
    prompt = "the model engine and the cache of the river"
    messages = [{"role": "user", "content": prompt}]
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        cards = (await http.get("/v1/models")).json()["data"]
        completion = await http.post(
            "/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 12}
        )
        chat = await http.post(
            "/v1/chat/completions",
            json={"model": "tiny-chat", "messages": messages, "max_tokens": 12},
        )
    sim.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        code = await sim.process.wait()
    log = await sim.stderr_text()

    assert [c["id"] for c in cards] == ["tiny", "tiny-chat"]
    meta = cards[0]["arks_sim"]
    assert meta["tokenizer"] == "huggingface"
    assert meta["output_vocabulary"] == "tokenizer"
    assert cards[0]["max_model_len"] == 2048  # from config.json
    usage = completion.json()["usage"]
    assert usage["prompt_tokens"] == len(tokenizer.encode(prompt).ids)
    rendered = render_chat([ChatMessage(m["role"], m["content"]) for m in messages])
    assert chat.json()["usage"]["prompt_tokens"] == len(tokenizer.encode(rendered).ids)
    # Answers are made of the tokenizer's own word tokens: re-encoding gives back about
    # one token per generated token (the first word has no leading space).
    text = completion.json()["choices"][0]["text"]
    assert 12 <= len(tokenizer.encode(text).ids) <= 12 + 3
    assert "--dtype half --gpu-memory-utilization 0.9" in log
    assert code == 0


async def test_impossible_configuration_exits_with_code_2(spawn_sim):
    sim = await spawn_sim("--max-model-len", "100000", "--num-gpu-blocks-override", "10")
    async with asyncio.timeout(15):
        code = await sim.process.wait()
    assert code == 2
    assert "larger than the maximum number of tokens" in await sim.stderr_text()


async def test_invalid_flag_value_exits_with_code_2(spawn_sim):
    sim = await spawn_sim("--max-num-seqs", "-4")
    async with asyncio.timeout(15):
        code = await sim.process.wait()
    assert code == 2
    assert "max_num_seqs" in await sim.stderr_text()


def test_docs_list_every_flag_and_env_var():
    docs = (Path(__file__).resolve().parents[3] / "docs" / "engine-sim.md").read_text()
    for name in SimSettings.model_fields:
        assert f"`--{name.replace('_', '-')}" in docs, name
        assert f"`ARKS_SIM_{name.upper()}`" in docs, name
