"""Fixtures: a real reconciler against a real NATS server (helpers: arks_reconciler.testing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from arks_common import messaging
from arks_common.store import ResourceStore
from arks_reconciler.local.platform import LocalPlatform
from arks_reconciler.testing import InProcessReconciler, kill_scope, make_settings


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "arks"
    yield path
    kill_scope(path)


@pytest.fixture
async def store(bus: messaging.Bus) -> ResourceStore:
    return ResourceStore(bus)


@pytest.fixture
async def reconciler(nats_server: Any, data_dir: Path) -> AsyncIterator[InProcessReconciler]:
    running = InProcessReconciler(make_settings(nats_server.url, data_dir, stop_on_exit=True))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def watched_local_platform(
    settings: Any, bus: messaging.Bus, client: Any, leadership: Any
) -> tuple[Any, list[bool]]:
    """A LocalPlatform led by `leadership` (a stand-in or an elector), and a list that
    gets an entry each time its resources are watched (so a test sees a standby watch
    nothing)."""
    platform = LocalPlatform(settings.local, bus, ResourceStore(bus), client)
    platform.leadership = leadership
    watched: list[bool] = []
    watch = platform.store.watch

    def counting_watch(*args: Any, **kwargs: Any) -> Any:
        watched.append(True)
        return watch(*args, **kwargs)

    platform.store.watch = counting_watch  # type: ignore[method-assign]
    return platform, watched
