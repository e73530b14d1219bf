"""W3C trace context across the pipeline's hops: Service Bus application properties, HTTP headers, the
Functions invocation context.

On a message the context travels as ``traceparent`` / ``tracestate`` and, for readers that know only the
older name (the Functions host's Service Bus extension, Application Insights), ``Diagnostic-Id`` with the
same value, as the Service Bus SDK stamps them. A reader takes ``traceparent`` first, then ``Diagnostic-Id``.
Keys and values may arrive as ``bytes`` (the SDK's received messages) or ``str``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"

_PROPAGATOR = TraceContextTextMapPropagator()


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return value if isinstance(value, str) and value else None


def _lookup(carrier: Mapping[Any, Any], name: str) -> str | None:
    for key in (name, name.encode(), name.lower(), name.lower().encode()):
        value = _text(carrier.get(key))
        if value:
            return value
    return None


def current_headers(context: Context | None = None) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span, for an HTTP request; empty when none."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return carrier


def message_properties(context: Context | None = None) -> dict[str, str]:
    """Application properties that carry the current span to the message's readers; empty when none."""
    headers = current_headers(context)
    if TRACEPARENT in headers:
        headers[DIAGNOSTIC_ID] = headers[TRACEPARENT]
    return headers


def traceparent_of(carrier: Mapping[Any, Any] | None) -> str | None:
    """The ``traceparent`` a message or request carries (``Diagnostic-Id`` if that is all it has), checked."""
    context = context_from(carrier)
    return current_headers(context).get(TRACEPARENT) if context is not None else None


def context_from(carrier: Mapping[Any, Any] | None) -> Context | None:
    """The remote context in message properties or HTTP headers (``traceparent`` first, then
    ``Diagnostic-Id``); None when neither holds a valid one."""
    if not carrier:
        return None
    parent = _lookup(carrier, TRACEPARENT) or _lookup(carrier, DIAGNOSTIC_ID)
    if not parent:
        return None
    fields = {TRACEPARENT: parent}
    state = _lookup(carrier, TRACESTATE)
    if state:
        fields[TRACESTATE] = state
    context = _PROPAGATOR.extract(fields)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def span_context_of(context: Context | None) -> SpanContext | None:
    if context is None:
        return None
    span_context = trace.get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None


def parent_and_links(message: Context | None, invocation: Context | None) -> tuple[Context | None, list[Link]]:
    """Where a message-triggered function's span belongs.

    The host's span for the invocation is the parent when it continues the message's trace (the usual case in
    Azure). When it started a trace of its own (the host dropped the message's context, as happened for
    session triggers before azure-functions-host PR 11946), the message's context wins so the file keeps one
    trace, and the host's span is linked instead.
    """
    message_span, host_span = span_context_of(message), span_context_of(invocation)
    if host_span is None:
        return message, []
    if message_span is None or message_span.trace_id == host_span.trace_id:
        return invocation, []
    return message, [Link(host_span)]


def trace_id_hex(span_context: SpanContext | None = None) -> str | None:
    """The current (or given) trace id as 32 hex digits; None outside a valid trace."""
    span_context = span_context or trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
