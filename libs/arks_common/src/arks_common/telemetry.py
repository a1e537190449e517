"""Logs, metrics and traces, set up the same way in every service.

- Logs: JSON lines on stderr (one object per record, with the service name, logger,
  level, message and any `extra=` fields), or plain text for humans.
- Metrics: prometheus_client, one registry per service process (so tests can build
  several services in one interpreter without name clashes).
- Traces: OpenTelemetry. Spans are exported over OTLP only when an endpoint is set;
  W3C trace context travels in NATS headers (`traceparent`), so a usage event can be
  followed from the router's request span into the accountant.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Mapping
from typing import Any

import orjson
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from arks_common.settings import TelemetrySettings

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure_logging(service: str, settings: TelemetrySettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Chatty libraries stay at WARNING unless debugging.
    for name in ("nats", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def configure_tracing(service: str, settings: TelemetrySettings) -> None:
    """Install a tracer provider; export spans only when an OTLP endpoint is configured."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if settings.otlp_endpoint:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        # The OTLP exporter is an optional install; fall back to console export so a
        # configured endpoint is never silently ignored.
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )

            exporter: Any = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
        except ImportError:
            logging.getLogger(__name__).warning(
                "opentelemetry-exporter-otlp-proto-http is not installed; spans go to stderr"
            )
            exporter = ConsoleSpanExporter(out=sys.stderr)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_trace_headers() -> dict[str, str]:
    """W3C trace context of the current span, for NATS message headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_trace_context(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context carried by a message, to parent a consumer's span."""
    return propagate.extract(dict(headers or {}))


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


def render_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
