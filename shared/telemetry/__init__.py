"""Telemetry for every process of the pipeline: OpenTelemetry set-up, W3C trace context, log fields, metrics.

``setup`` picks the exporter from the environment (once per process), ``propagation`` carries the trace across
Service Bus messages and HTTP calls, ``logs`` puts the trace id and the request id on every log record,
``metrics`` holds the instruments, and ``pipeline`` the spans of each stage of a file's journey.
"""
