"""Fixtures of the model cache's tests: a fake Hub, a cache root, an open ModelCache.

- `hub`: a running `FakeHub` (stopped after the test), with small tree pages so every
  listing is paginated;
- `cache_root`: an empty directory for the cache;
- `access`: `HubAccess` pointing at `hub`;
- `open_cache(**kwargs)`: opens a `ModelCache` on `cache_root` (fast retries by default);
- `run_cli(*args, **env)`: the `arks-model-cache` console script as a subprocess,
  pointed at `hub`.

Every test talks to 127.0.0.1 only: the Hub endpoint is always passed explicitly, and
huggingface_hub's token lookup is isolated (no HF_TOKEN, an empty HF_HOME) so a
developer's login never leaks into a test.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import constants as hf_constants

from arks_model_cache.caching import ModelCache
from arks_model_cache.settings import DownloadSettings
from arks_model_cache.specs import HubAccess
from arks_model_cache.testing.fakehub import FakeHub

MiB = 1024 * 1024
FAST_RETRIES = DownloadSettings(attempts=3, backoff_initial=0.05, backoff_max=0.2)


@pytest.fixture(autouse=True)
def _isolated_hf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    # huggingface_hub read HF_HUB_OFFLINE at import: tests that want offline say so.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(page_size=3) as running:
        yield running


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def access(hub: FakeHub) -> HubAccess:
    return HubAccess(endpoint=hub.url)


OpenCache = Callable[..., AbstractAsyncContextManager[ModelCache]]


@pytest.fixture
def open_cache(cache_root: Path) -> OpenCache:
    @asynccontextmanager
    async def opener(**kwargs: Any) -> AsyncIterator[ModelCache]:
        kwargs.setdefault("downloads", FAST_RETRIES)
        async with ModelCache.at(kwargs.pop("root", cache_root), **kwargs) as cache:
            yield cache

    return opener


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def cli_env(hub: FakeHub, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ARKS_"))}
    env.update(
        {
            "ARKS_HUB__ENDPOINT": hub.url,
            "ARKS_DOWNLOADS__PROGRESS_INTERVAL": "0.2",
            "ARKS_DOWNLOADS__BACKOFF_INITIAL": "0.05",
            "HF_HOME": os.environ.get("HF_HOME", ""),
        }
    )
    env.update(extra)
    return env


RunCli = Callable[..., Awaitable[CliRun]]


@pytest.fixture
def run_cli(hub: FakeHub) -> RunCli:
    """`await run_cli(*args, ENV=value)`: the console script against `hub`."""

    async def run(*args: str, **env: str) -> CliRun:
        script = Path(sys.executable).parent / "arks-model-cache"
        proc = await asyncio.create_subprocess_exec(
            str(script),
            *args,
            env=cli_env(hub, **env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 45)
        assert proc.returncode is not None
        return CliRun(proc.returncode, out.decode(), err.decode())

    return run
