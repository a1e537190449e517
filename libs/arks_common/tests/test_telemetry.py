import json
import logging

from opentelemetry import trace

from arks_common import telemetry
from arks_common.settings import TelemetrySettings


def test_json_log_lines_carry_service_and_extra_fields() -> None:
    formatter = telemetry.JsonFormatter("arks-test")
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "INFO", "msg": "hello %s", "args": ("you",), "request_id": "r1"}
    )
    line = json.loads(formatter.format(record))
    assert line["service"] == "arks-test"
    assert line["msg"] == "hello you"
    assert line["request_id"] == "r1"


def test_trace_context_travels_in_headers() -> None:
    telemetry.configure_tracing("arks-test", TelemetrySettings())
    tracer = telemetry.tracer("test")
    with tracer.start_as_current_span("produce") as span:
        headers = telemetry.inject_trace_headers()
        trace_id = span.get_span_context().trace_id
    assert "traceparent" in headers
    ctx = telemetry.extract_trace_context(headers)
    assert trace.get_current_span(ctx).get_span_context().trace_id == trace_id
