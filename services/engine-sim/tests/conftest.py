"""Fixtures for the engine simulator's tests.

- `start_sim(**settings)`: an in-process simulator (real uvicorn + httptools on the
  test's event loop, port 0, time scale 20 unless overridden); yields a `RunningSim`
  with `base_url`, an `openai` client factory, a raw `httpx` client factory and
  `metrics()` (a parsed /metrics scrape). Stopped gracefully on exit.
- `tiny_model`: a model directory with a small byte-level BPE `tokenizer.json` (trained
  here, no downloads) and a `config.json`; yields (path, tokenizer).
- `spawn_sim(*args)`: the `arks-engine-sim` console script as a subprocess, for
  behaviour that ends the process (crash faults, exit codes, signals).
- `openai_schemas`: validation of response bodies against OpenAI's published OpenAPI
  description (`<repo>/../shared/upstream/openai/openapi.yaml`), $refs resolved; a test
  that uses it is a conformance test (`make conformance`, see
  `arks_common.testing.reference`). Two
  adaptations, both documented where they are built: OpenAPI 3.0 `nullable` is
  translated to JSON Schema, and two shapes that the spec states too narrowly get a
  widened copy (`CompletionStreamChunk`: streamed text_completion chunks carry
  `finish_reason: null` until the last; `VllmErrorResponse`: vLLM's `code` is the HTTP
  status as an integer).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from arks_engine_sim import SimSettings, Simulator
from arks_engine_sim.vocabulary import Vocabulary

OPENAPI = ("upstream", "openai", "openapi.yaml")
SIM_SCRIPT = str(Path(sys.executable).parent / "arks-engine-sim")


# -- metrics ---------------------------------------------------------------------------
@dataclass
class Metrics:
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples called `name` whose labels include `labels`."""
        return sum(
            v
            for n, have, v in self.samples
            if n == name and all(have.get(k) == want for k, want in labels.items())
        )

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


def parse_metrics(text: str) -> Metrics:
    metrics = Metrics()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            metrics.samples.append((sample.name, dict(sample.labels), sample.value))
    return metrics


# -- in-process simulators ---------------------------------------------------------------
@dataclass
class RunningSim:
    simulator: Simulator

    @property
    def base_url(self) -> str:
        return self.simulator.base_url

    @property
    def model(self) -> str:
        return self.simulator.settings.model_names[0]

    def openai(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0, **kwargs
        )

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 30)
        return httpx.AsyncClient(base_url=self.base_url, **kwargs)

    async def metrics(self) -> Metrics:
        async with self.http() as client:
            response = await client.get("/metrics")
            response.raise_for_status()
            return parse_metrics(response.text)


SimStarter = Callable[..., AbstractAsyncContextManager[RunningSim]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def start_sim() -> SimStarter:
    @asynccontextmanager
    async def start(*, wait: str = "loaded", **overrides: Any) -> AsyncIterator[RunningSim]:
        """`wait`: "loaded" (ready to serve), "listening" (port bound) or "nothing"."""
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "model": "sim-model",
            "time_scale": 20.0,
            "uvicorn_log_level": "warning",
            "shutdown_timeout": 5,
            **overrides,
        }
        simulator = Simulator(SimSettings(**values))
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(simulator.run(), name="simulator")
                if wait != "nothing":
                    event = simulator.loaded if wait == "loaded" else simulator.listening
                    async with asyncio.timeout(20):
                        await event.wait()
                try:
                    yield RunningSim(simulator)
                finally:
                    simulator.request_stop()
        except BaseExceptionGroup as group:
            # Show a failing test's own assertion, not the TaskGroup's wrapper.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    return start


# -- a model directory ------------------------------------------------------------------
def make_model_dir(root: Path) -> tuple[Path, Tokenizer]:
    """A tiny byte-level BPE trained here (no downloads) plus a config.json."""
    words = Vocabulary.builtin().texts
    corpus = [" ".join(words[i : i + 12]) for i in range(0, len(words), 3)] * 4
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer)
    root.mkdir()
    tokenizer.save(str(root / "tokenizer.json"))
    (root / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    return root, tokenizer


@pytest.fixture
def tiny_model(tmp_path: Path) -> tuple[Path, Tokenizer]:
    return make_model_dir(tmp_path / "tiny-model")


# -- subprocess simulators -----------------------------------------------------------------
@dataclass
class SimProcess:
    process: asyncio.subprocess.Process
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self) -> None:
        async with asyncio.timeout(20), httpx.AsyncClient() as client:
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"simulator exited with {self.process.returncode}")
                try:
                    if (await client.get(f"{self.base_url}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)

    async def stderr_text(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()


@pytest.fixture
async def spawn_sim() -> AsyncIterator[Callable[..., Any]]:
    spawned: list[asyncio.subprocess.Process] = []

    async def spawn(*args: str, env: dict[str, str] | None = None) -> SimProcess:
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            SIM_SCRIPT,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        spawned.append(process)
        return SimProcess(process, port)

    yield spawn
    for process in spawned:
        if process.returncode is None:
            process.kill()
        await process.wait()


# -- OpenAI schemas --------------------------------------------------------------------------
def _translate_nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` (still used in parts of the 3.1 document) in JSON
    Schema terms; jsonschema would otherwise ignore it and reject legitimate nulls."""
    if isinstance(node, list):
        return [_translate_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _translate_nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if "$ref" in node:
            return {"anyOf": [{"$ref": node.pop("$ref")}, {"type": "null"}], **node}
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    return node


class OpenAISchemas:
    def __init__(self, document: dict[str, Any]) -> None:
        components = _translate_nullable(document["components"])
        schemas = components["schemas"]
        # The spec says streamed and unary completions share one shape, but every
        # streamed chunk before the last has `finish_reason: null` (OpenAI's own too).
        chunk = copy.deepcopy(schemas["CreateCompletionResponse"])
        reason = chunk["properties"]["choices"]["items"]["properties"]["finish_reason"]
        reason["type"] = ["string", "null"]
        reason["enum"] = [*reason["enum"], None]
        schemas["CompletionStreamChunk"] = chunk
        # vLLM's error `code` is the HTTP status (integer); OpenAI's is a string or null.
        error = copy.deepcopy(schemas["Error"])
        error["properties"]["code"] = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
        schemas["VllmError"] = error
        schemas["VllmErrorResponse"] = {
            "type": "object",
            "properties": {"error": {"$ref": "#/components/schemas/VllmError"}},
            "required": ["error"],
        }
        resource = Resource.from_contents(
            {"components": components}, default_specification=DRAFT202012
        )
        self._registry: Registry[Any] = Registry().with_resource("urn:openai", resource)
        self.names = set(schemas)

    def validate(self, name: str, instance: Any) -> None:
        assert name in self.names, name
        schema = {"$ref": f"urn:openai#/components/schemas/{name}"}
        Draft202012Validator(schema, registry=self._registry).validate(instance)


@pytest.fixture(scope="session")
def openai_schemas(shared_reference: Path) -> OpenAISchemas:
    with shared_reference.joinpath(*OPENAPI).open() as handle:
        document = yaml.load(handle, Loader=yaml.CSafeLoader)
    return OpenAISchemas(document)
