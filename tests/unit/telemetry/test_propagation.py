"""W3C trace context on Service Bus properties and HTTP headers, the trace / request fields of log records, and
the Service Bus depth gauges' shared read."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from shared.config import SettingsError
from shared.telemetry import logs, propagation
from shared.telemetry.metrics import SharedRead, SubscriptionDepth
from shared.telemetry.setup import Exporter, TelemetrySettings

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
OTHER_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _context(trace_id: int, span_id: int = 0x1234) -> otel_context.Context:
    span = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1)))
    return trace.set_span_in_context(span)


def test_message_properties_carry_traceparent_and_diagnostic_id() -> None:
    props = propagation.message_properties(_context(TRACE_ID, 0xABC))
    assert props["traceparent"] == props["Diagnostic-Id"]
    assert props["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"


def test_no_current_span_adds_nothing() -> None:
    assert propagation.message_properties(otel_context.Context()) == {}


def test_reader_takes_traceparent_first_then_diagnostic_id_bytes_or_str() -> None:
    both = {b"Diagnostic-Id": OTHER.encode(), b"traceparent": PARENT.encode()}
    assert propagation.trace_id_hex(propagation.span_context_of(propagation.context_from(both))) == f"{TRACE_ID:032x}"
    only_diagnostic = {"Diagnostic-Id": OTHER}
    context = propagation.context_from(only_diagnostic)
    assert propagation.trace_id_hex(propagation.span_context_of(context)) == f"{OTHER_TRACE_ID:032x}"
    assert propagation.context_from({"traceparent": "garbage"}) is None
    assert propagation.context_from(None) is None


def test_host_span_is_the_parent_when_it_continues_the_message_trace() -> None:
    message = propagation.context_from({"traceparent": PARENT})
    host = _context(TRACE_ID, 0x99)
    parent, links = propagation.parent_and_links(message, host)
    assert parent is host and links == []


def test_message_wins_when_the_host_started_another_trace() -> None:
    message = propagation.context_from({"traceparent": PARENT})
    host = _context(OTHER_TRACE_ID, 0x99)
    parent, links = propagation.parent_and_links(message, host)
    assert parent is message
    assert [link.context.trace_id for link in links] == [OTHER_TRACE_ID]


def test_log_records_carry_trace_and_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # The record factory is process-wide: put the original back afterwards.
    monkeypatch.setattr(logs, "_installed", False)
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())
    logs.install()
    logger = logging.getLogger("tests.telemetry")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        token = otel_context.attach(_context(TRACE_ID))
        try:
            with logs.request_scope("r" * 32):
                logger.warning("inside")
        finally:
            otel_context.detach(token)
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = records
    assert (inside.trace_id, inside.request_id) == (f"{TRACE_ID:032x}", "r" * 32)  # type: ignore[attr-defined]
    assert (outside.trace_id, outside.request_id) == ("-", "-")  # type: ignore[attr-defined]
    assert "[trace=" in logging.Formatter(logs.LOG_FORMAT).format(inside)


def test_exporter_follows_the_documented_settings() -> None:
    appinsights = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}
    worker = {
        **appinsights,
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "FUNCTIONS_WORKER_RUNTIME": "python",
    }
    assert TelemetrySettings.from_env(worker).exporter == Exporter.WORKER
    assert TelemetrySettings.from_env(appinsights).exporter == Exporter.AZURE_MONITOR
    assert (
        TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}).exporter == Exporter.OTLP
    )
    local = TelemetrySettings.from_env({"TELEMETRY_DIR": "/tmp/t"})
    assert local.exporter == Exporter.FILE and str(local.directory) == "/tmp/t"
    assert TelemetrySettings.from_env({}).exporter == Exporter.OFF
    assert TelemetrySettings.from_env({"TELEMETRY_DIR": "/tmp/t", "TELEMETRY_DISABLED": "true"}).enabled is False


def test_a_bad_telemetry_setting_is_named() -> None:
    with pytest.raises(SettingsError, match="setting OTEL_METRIC_EXPORT_INTERVAL must be an integer, got 'soon'"):
        TelemetrySettings.from_env({"OTEL_METRIC_EXPORT_INTERVAL": "soon"})
    assert (
        TelemetrySettings.from_env({"TELEMETRY_DIR": "/tmp/t", "OTEL_METRIC_EXPORT_INTERVAL": "250"}).metric_interval_ms
        == 250
    )


def test_one_service_bus_read_serves_both_depth_gauges_of_an_export(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    calls: list[float] = []

    def source() -> list[SubscriptionDepth]:
        calls.append(now[0])
        if len(calls) == 3:
            raise ConnectionError("emulator down")
        return [SubscriptionDepth("inference-requests", "default", active=len(calls), dead_lettered=0)]

    read = SharedRead(source, fresh_seconds=1.0, clock=lambda: now[0])
    assert read() == read()  # the active and the dead-lettered gauge of one export
    assert calls == [100.0]
    now[0] += 10  # the next export reads again
    assert [d.active for d in read()] == [2] and len(calls) == 2
    now[0] += 10
    with caplog.at_level(logging.WARNING):
        assert read() == []
    assert "Service Bus depths unavailable" in caplog.text
