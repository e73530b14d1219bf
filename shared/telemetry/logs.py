"""Every log record carries the trace id and the request id it was written under.

:func:`install` wraps the process's log record factory once, so records of every logger (ours, the
SDKs', the local host's) get ``trace_id`` (32 hex digits of the current span's trace, ``-`` outside one)
and ``request_id`` (set with :func:`request_scope` while a use case works on one request, ``-`` otherwise).
:data:`LOG_FORMAT` prints both; exporters that ship log records (the Azure Monitor distro, OTLP) take the
trace from the record's span context and ``request_id`` as an attribute.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s request=%(request_id)s]: %(message)s"
NONE = "-"


class _Scope:
    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id


_SCOPE: ContextVar[_Scope | None] = ContextVar("request_scope", default=None)
_installed = False


@contextlib.contextmanager
def request_scope(request_id: str | None) -> Iterator[None]:
    token = _SCOPE.set(_Scope(request_id))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def set_request_id(request_id: str | None) -> None:
    """For code that learns the request id part-way through a :func:`request_scope`; outside one it does
    nothing, so no id outlives the work it belongs to."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.request_id = request_id


def current_request_id() -> str | None:
    scope = _SCOPE.get()
    return scope.request_id if scope is not None else None


def install() -> None:
    """Idempotent; safe to call from every entry point of the process."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        span_context = trace.get_current_span().get_span_context()
        record.trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else NONE
        scope = _SCOPE.get()
        record.request_id = (scope.request_id if scope is not None else None) or NONE
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
