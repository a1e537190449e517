"""Fixtures: a real reconciler against a real NATS server (helpers: arks_reconciler.testing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from arks_common import messaging
from arks_common.store import ResourceStore
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
