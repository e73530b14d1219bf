"""Where a process sends its telemetry, decided once from its environment, the way each place documents it.

* Azure Functions with ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` (and
  ``APPLICATIONINSIGHTS_CONNECTION_STRING``): the Python worker configures the Azure Monitor distro itself, so
  nothing is configured here (a second ``configure_azure_monitor()`` would export everything twice).
* ``APPLICATIONINSIGHTS_CONNECTION_STRING`` anywhere else (the Azure ML deployment of the scoring server):
  ``azure.monitor.opentelemetry.configure_azure_monitor()``.
* ``OTEL_EXPORTER_OTLP_ENDPOINT``: the OpenTelemetry SDK with the OTLP/HTTP exporters for spans, metrics and
  logs (``OTEL_EXPORTER_OTLP_HEADERS`` and the other standard ``OTEL_*`` variables apply).
* ``TELEMETRY_DIR`` (the local stack sets it to ``.devstack/telemetry``): the SDK's console exporters writing
  one JSON document per line to ``spans-<service>-<pid>.jsonl`` and ``metrics-<service>-<pid>.jsonl`` in that
  folder, so a developer, a test or the status page reads them with no extra service.
* none of these: nothing is configured and the OpenTelemetry API stays a no-op: no ids are made, no span is
  recorded, and a trace that arrives is only passed on.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from shared.config import SettingsReader

logger = logging.getLogger(__name__)

APPINSIGHTS_CONNECTION = "APPLICATIONINSIGHTS_CONNECTION_STRING"
APPINSIGHTS_AUTHENTICATION = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
WORKER_APPINSIGHTS = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TELEMETRY_DIR = "TELEMETRY_DIR"
TELEMETRY_DISABLED = "TELEMETRY_DISABLED"
FUNCTIONS_WORKER_RUNTIME = "FUNCTIONS_WORKER_RUNTIME"
METRIC_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"
_DEFAULT_METRIC_INTERVAL_MS = 60_000


class Exporter(StrEnum):
    OFF = "off"
    WORKER = "functions-worker"  # the Functions Python worker configured the Azure Monitor distro
    AZURE_MONITOR = "azure-monitor"
    OTLP = "otlp"
    FILE = "file"


@dataclass(frozen=True)
class TelemetrySettings:
    exporter: Exporter
    directory: Path | None = None
    metric_interval_ms: int = _DEFAULT_METRIC_INTERVAL_MS

    @property
    def enabled(self) -> bool:
        return self.exporter != Exporter.OFF

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelemetrySettings:
        read = SettingsReader(os.environ if env is None else env)
        interval = read.integer(METRIC_INTERVAL, _DEFAULT_METRIC_INTERVAL_MS, minimum=1)
        if (read.optional(TELEMETRY_DISABLED) or "").lower() in ("1", "true", "yes"):
            return cls(Exporter.OFF)
        if read.optional(APPINSIGHTS_CONNECTION):
            worker = (read.optional(WORKER_APPINSIGHTS) or "").lower() == "true" and read.optional(
                FUNCTIONS_WORKER_RUNTIME
            )
            return cls(Exporter.WORKER if worker else Exporter.AZURE_MONITOR, metric_interval_ms=interval)
        if read.optional(OTLP_ENDPOINT):
            return cls(Exporter.OTLP, metric_interval_ms=interval)
        directory = read.optional(TELEMETRY_DIR)
        if directory:
            return cls(Exporter.FILE, Path(directory), metric_interval_ms=interval)
        return cls(Exporter.OFF)


_LOCK = threading.Lock()
_CONFIGURED: TelemetrySettings | None = None


def configure(service_name: str, settings: TelemetrySettings | None = None) -> TelemetrySettings:
    """Sets up this process's providers once (later calls return the first settings); never raises for an
    exporter that cannot start: telemetry must not stop the pipeline, so it logs and stays off instead."""
    global _CONFIGURED
    with _LOCK:
        if _CONFIGURED is not None:
            return _CONFIGURED
        settings = settings or TelemetrySettings.from_env()
        try:
            _configure(service_name, settings)
        except (ImportError, OSError, ValueError) as exc:
            logger.error("telemetry (%s) could not be set up, continuing without it: %s", settings.exporter, exc)
            settings = TelemetrySettings(Exporter.OFF)
        _CONFIGURED = settings
        if settings.enabled:
            logger.info("telemetry for %s: %s", service_name, settings.exporter)
        return settings


def _configure(service_name: str, settings: TelemetrySettings) -> None:
    if settings.exporter in (Exporter.OFF, Exporter.WORKER):
        return
    if settings.exporter == Exporter.AZURE_MONITOR:
        from azure.monitor.opentelemetry import configure_azure_monitor

        os.environ.setdefault("OTEL_SERVICE_NAME", service_name)
        configure_azure_monitor(**_entra_credential(os.environ.get(APPINSIGHTS_AUTHENTICATION, "")))
        return
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
    span_exporter: SpanExporter
    metric_exporter: MetricExporter
    if settings.exporter == Exporter.OTLP:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter, metric_exporter = OTLPSpanExporter(), OTLPMetricExporter()
        _otlp_logs(resource)
    else:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        assert settings.directory is not None
        settings.directory.mkdir(parents=True, exist_ok=True)
        stem = f"{service_name}-{os.getpid()}.jsonl"
        span_exporter = ConsoleSpanExporter(
            out=_line_file(settings.directory / f"spans-{stem}"),
            formatter=lambda span: span.to_json(indent=None) + "\n",
        )
        metric_exporter = ConsoleMetricExporter(
            out=_line_file(settings.directory / f"metrics-{stem}"),
            formatter=lambda data: data.to_json(indent=None) + "\n",
        )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=settings.metric_interval_ms)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def _entra_credential(authentication: str) -> dict[str, Any]:
    """``credential=`` for Entra ingestion when ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` asks for it
    (``Authorization=AAD``, optionally ``ClientId=<user-assigned identity>``), as Application Insights resources
    with local authentication disabled require."""
    parts = dict(part.split("=", 1) for part in authentication.split(";") if "=" in part)
    if parts.get("Authorization", "").upper() != "AAD":
        return {}
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = parts.get("ClientId")
    return {"credential": ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()}


def _line_file(path: Path) -> IO[str]:
    # Line-buffered append: a reader never sees half a span, and a restarted process (new pid) adds a file.
    return path.open("a", encoding="utf-8", buffering=1)


def _otlp_logs(resource: Any) -> None:
    """Log records to the OTLP endpoint too, as Microsoft's Functions OTLP example does."""
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(provider)
    logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))


def configured() -> TelemetrySettings | None:
    return _CONFIGURED
