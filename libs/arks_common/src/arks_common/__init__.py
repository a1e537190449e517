"""Arks shared contracts: what every service agrees on.

Modules (import the module, then use its names — `from arks_common import events`):

- `resources`  pydantic models of the six arks.ai/v1 kinds; `crds` generates the CRDs
- `events`     versioned NATS messages and KV values (usage, billing, routes, grants, …)
- `subjects`   every stream, subject, consumer and KV bucket name
- `ledger`     the Redis key layout and money arithmetic of quotas (router ⇄ accountant)
- `messaging`  NATS/JetStream: connect, ensure topology, publish, consume, watch KV
- `store`      the local platform's resource store (Kubernetes semantics over NATS KV)
- `runtime`    `run_service()`: signals, TaskGroup, health endpoints, graceful drain
- `settings`   typed settings with the `ARKS_` prefix
- `errors`     retryable vs permanent errors
- `telemetry`  JSON logs, Prometheus, OpenTelemetry
- `embedded`   nats-server and Valkey child processes (`make run`, tests)
- `testing`    pytest fixtures and builders

The names below are the stable surface re-exported for convenience.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arks_common.errors import ArksError, PermanentError, RetryableError
    from arks_common.events import Event, Message
    from arks_common.messaging import Bus
    from arks_common.resources import dump_resource, load_resources, parse_resource
    from arks_common.runtime import HttpApp, Service, run_service
    from arks_common.settings import ServiceSettings
    from arks_common.store import ResourceStore

__version__ = "0.1.0"

# Re-exports load lazily: importing one small module (say `arks_common.events` in a
# one-shot download Job) must not pay for pydantic models of every resource and the
# NATS client.
_EXPORTS = {
    "ArksError": "arks_common.errors",
    "PermanentError": "arks_common.errors",
    "RetryableError": "arks_common.errors",
    "Event": "arks_common.events",
    "Message": "arks_common.events",
    "Bus": "arks_common.messaging",
    "dump_resource": "arks_common.resources",
    "load_resources": "arks_common.resources",
    "parse_resource": "arks_common.resources",
    "HttpApp": "arks_common.runtime",
    "Service": "arks_common.runtime",
    "run_service": "arks_common.runtime",
    "ServiceSettings": "arks_common.settings",
    "ResourceStore": "arks_common.store",
}

__all__ = [
    "ArksError",
    "Bus",
    "Event",
    "HttpApp",
    "Message",
    "PermanentError",
    "ResourceStore",
    "RetryableError",
    "Service",
    "ServiceSettings",
    "__version__",
    "dump_resource",
    "load_resources",
    "parse_resource",
    "run_service",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arks_common' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return list(__all__)
