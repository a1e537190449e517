"""Test support for the reconciler, also for cross-service tests: object builders,
`eventually`, and the reconciler run in-process or as a real `arks-reconciler` process.

Builders return the YAML-shaped dicts users write (`app_obj(replicas=3)`), ready for
`ResourceStore.apply`. Nothing here is used by the service itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from arks_common import messaging, resources, subjects
from arks_common.runtime import Service, run_until_stopped
from arks_common.settings import (
    HealthSettings,
    NatsSettings,
    ShutdownSettings,
    TelemetrySettings,
)
from arks_reconciler.local import processes
from arks_reconciler.local.registry import ReplicaRecord
from arks_reconciler.publishing import read_bucket
from arks_reconciler.service import lifespan
from arks_reconciler.settings import (
    LocalSettings,
    QueueSettings,
    ReconcilerSettings,
    ScrapeSettings,
)

T = TypeVar("T")

FAST_LOCAL = {
    "health_interval": 0.2,
    "health_timeout": 1.0,
    "restart_backoff_initial": 0.3,
    "restart_backoff_max": 2.0,
    "stop_grace": 5.0,
    "startup_timeout": 30.0,
    "sim_time_scale": 50.0,
}


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def make_settings(nats_url: str, data_dir: Path, **local: Any) -> ReconcilerSettings:
    return ReconcilerSettings(
        nats=NatsSettings(url=nats_url, connect_deadline=10),
        health=HealthSettings(port=0),
        shutdown=ShutdownSettings(drain_timeout=8),
        telemetry=TelemetrySettings(log_json=False),
        queue=QueueSettings(resync_period=5.0, retry_initial=0.1, retry_max=2.0),
        scrape=ScrapeSettings(interval=0.3, timeout=0.5),
        local=LocalSettings(data_dir=data_dir, **{**FAST_LOCAL, **local}),
    )


class InProcessReconciler:
    """The reconciler service (run_until_stopped), started and stopped by a test."""

    def __init__(self, settings: ReconcilerSettings) -> None:
        self.settings = settings
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.service: Service | None = None

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self.service = None
        self._task = asyncio.create_task(
            run_until_stopped(
                "arks-reconciler", self.settings, lifespan, self._stop, on_started=self._started
            ),
            name="test:reconciler",
        )

    def _started(self, service: Service) -> None:
        self.service = service

    @property
    def health_url(self) -> str:
        """Base URL of /livez, /readyz and /metrics (once started)."""
        assert self.service is not None
        assert self.service.http_port is not None
        return f"http://{self.settings.health.host}:{self.service.http_port}"

    async def stop(self) -> None:
        if self._stop is None or self._task is None:
            return
        self._stop.set()
        await asyncio.wait_for(self._task, 30)
        self._stop = self._task = None


def kill_scope(data_dir: Path) -> None:
    """Kill every replica process of a data directory (test cleanup)."""
    for pid in processes.find_marked(processes.scope_of(data_dir)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


class ReconcilerProcess:
    """`arks-reconciler` as a real process, for crash and restart tests."""

    def __init__(self, nats_url: str, data_dir: Path, log: Path) -> None:
        self.env = {
            **os.environ,
            "ARKS_NATS__URL": nats_url,
            "ARKS_LOCAL__DATA_DIR": str(data_dir),
            "ARKS_TELEMETRY__LOG_JSON": "false",
            "ARKS_SCRAPE__INTERVAL": "0.5",
            **{f"ARKS_LOCAL__{k.upper()}": str(v) for k, v in FAST_LOCAL.items()},
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "arks-reconciler")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None


async def replica_records(bus: messaging.Bus) -> list[ReplicaRecord]:
    entries = await read_bucket(bus, subjects.REPLICAS_BUCKET)
    return [ReplicaRecord.model_validate_json(v) for v in entries.values()]


# ---------------------------------------------------------------- object builders


def app_obj(name: str = "app-qwen", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"runtime": "sim", "model": {"name": "qwen-7b"}}
    body.update(spec)
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksApplication",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


def model_obj(name: str = "qwen-7b", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "Qwen/Qwen2.5-7B-Instruct"}
    body.update(spec)
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


def endpoint_obj(name: str = "qwen-7b", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksEndpoint",
        "metadata": {"name": name, "namespace": "default"},
        "spec": dict(spec),
    }


def token_obj(
    name: str = "example-token", token: str = "sk-test123456", **extra: Any
) -> dict[str, Any]:
    qos = extra.pop(
        "qos",
        [
            {
                "arksEndpoint": {"name": "qwen-7b"},
                "rateLimits": [
                    {"type": "rpm", "value": 60},
                    {"type": "tpm", "value": 40000},
                ],
                "quota": {"name": "basic-quota"},
            }
        ],
    )
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksToken",
        "metadata": {"name": name, "namespace": extra.pop("namespace", "default"), **extra},
        "spec": {"token": token, "qos": qos},
    }


def quota_obj(name: str = "basic-quota", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "quotas": [
            {"type": "prompt", "value": 100000},
            {"type": "response", "value": 500000},
            {"type": "total", "value": 600000},
        ]
    }
    body.update(spec)
    return {
        "apiVersion": "arks.ai/v1",
        "kind": "ArksQuota",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


def typed(obj: dict[str, Any]) -> Any:
    return resources.parse_resource(obj)


def with_status(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {**obj, "status": status, "metadata": {**obj["metadata"], "generation": 1}}
