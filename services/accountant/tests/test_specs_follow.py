"""Following the quota specs in KV: stopping never leaves a task of the watch behind."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.kv import KeyValue

from arks_accountant.specs import QuotaSpecs
from arks_accountant.testing import put_spec, wait_for
from arks_common.testing.builders import make_quota_spec


async def test_stopping_while_the_watch_is_set_up_leaves_no_task_running(
    bus, monkeypatch: pytest.MonkeyPatch
):
    """The accountant stops (or NATS reconnects) while the KV watch of the specs is
    being set up: the watcher is stopped in the loop turn its set-up completed. Its
    subscription task must end with it (test_recovery.py::test_nats_restart leaked it
    now and then on a loaded machine)."""
    await put_spec(bus, make_quota_spec())  # its message arrives during the set-up
    stop = asyncio.Event()
    set_up = KeyValue.watch

    async def watch_then_stop(self: KeyValue, *args: object, **kwargs: object) -> object:
        watcher = await set_up(self, *args, **kwargs)
        stop.set()  # in the same loop turn as the set-up's end
        return watcher

    monkeypatch.setattr(KeyValue, "watch", watch_then_stop)
    before = set(asyncio.all_tasks())
    specs = QuotaSpecs()
    await specs.follow(bus, stop)
    this = asyncio.current_task()

    def running() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() - before if t is not this and not t.done()]

    await wait_for(lambda: not running(), within=5, what="the watch's tasks to end")
