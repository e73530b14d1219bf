"""Spans of a file's journey, one trace per input file, and the metrics recorded at the same points.

Stages (attribute ``pipeline.stage``), in order: ``submit`` (the blob trigger starts the trace: the Functions
host does not trace blob triggers), ``score_request`` (continues it from the request message and calls the
endpoint, which gets ``traceparent``), ``accept`` (the scoring server's answer), ``score`` (its background job,
with child spans ``download``, ``parse+validate``, ``predict``, ``upload`` and ``publish``, which puts the trace
on the result message) and ``write`` (the writer, which ends it). Attributes: request id, input name, model
route, rows, bad rows, bytes, attempt, outcome / error code and the endpoint's HTTP status.

A request that ``reconcile`` publishes again stays in the file's trace: the ledger keeps the trace context its
record was first written under (:func:`traceparent`), and the resubmission runs in a :func:`resumed_span` of it
(stage ``reconcile``, with the attempt and the reason), so the new message carries the same trace.

Ledger transitions are the one place every file's state changes, so :func:`recorded` turns each into span
attributes, the request id of the log records and the file counters; the use cases call telemetry only where
they work on a request that no message brought (``reconcile``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from shared.telemetry import logs, metrics, propagation


class RecordView(Protocol):
    """What :func:`recorded` reads of a ledger record (``shared.ledger.LedgerRecord``)."""

    @property
    def request_id(self) -> str: ...
    @property
    def state(self) -> Enum: ...
    @property
    def input_name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def size(self) -> int | None: ...
    @property
    def rows_scored(self) -> int | None: ...
    @property
    def rows_failed(self) -> int | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def submitted_at(self) -> str | None: ...
    @property
    def updated_at(self) -> str | None: ...


TRACER = trace.get_tracer("async_inference")

STAGE = "pipeline.stage"
REQUEST_ID = "inference.request_id"
INPUT_NAME = "inference.input_name"
MODEL = "inference.model"
ROWS = "inference.rows"
BAD_ROWS = "inference.bad_rows"
BYTES = "inference.bytes"
ATTEMPT = "inference.attempt"
OUTCOME = "inference.outcome"
ERROR_CODE = "inference.error_code"
HTTP_STATUS = "http.response.status_code"
REASON = "inference.reason"

_ROOT = Context()  # an empty context: a span started in it begins a new trace


@contextlib.contextmanager
def submit_span(container: str, name: str) -> Iterator[Span]:
    """The root span of a file's trace, around the blob trigger's work."""
    attributes = {STAGE: "submit", INPUT_NAME: name, "inference.input_container": container}
    with (
        logs.request_scope(None),
        TRACER.start_as_current_span(
            "submit_blob", context=_ROOT, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span,
    ):
        yield span


@contextlib.contextmanager
def message_span(
    name: str, stage: str, properties: Mapping[Any, Any] | None, batch: Iterable[Mapping[Any, Any] | None] = ()
) -> Iterator[Span]:
    """A message-triggered function's span: continues the trace the message carries.

    With OpenTelemetry on, the Python worker makes the host's span for the invocation the current context
    before it calls the function (and the local host does the same); :func:`propagation.parent_and_links`
    decides how the function's span sits under it. A function that takes a batch passes the first message's
    ``properties`` and the others' as ``batch``: their traces are linked to the span.
    """
    opened = MessageSpan(name, stage, properties, batch)
    try:
        with opened.current() as span:
            yield span
    finally:
        opened.end()


class MessageSpan:
    """A :func:`message_span` that work in steps, on any thread, runs under (:meth:`current`), until :meth:`end`:
    the writer handles each result of a batch in steps with a step for the whole batch in between."""

    def __init__(
        self,
        name: str,
        stage: str,
        properties: Mapping[Any, Any] | None,
        batch: Iterable[Mapping[Any, Any] | None] = (),
    ) -> None:
        parent, links = propagation.parent_and_links(propagation.context_from(properties), otel_context.get_current())
        for others in batch:
            if (linked := propagation.span_context_of(propagation.context_from(others))) is not None:
                links.append(Link(linked))
        self.request_id = _text((properties or {}).get("request_id"))
        attributes = {STAGE: stage, REQUEST_ID: self.request_id} if self.request_id else {STAGE: stage}
        self.span = TRACER.start_span(
            name, context=parent or _ROOT, kind=SpanKind.CONSUMER, links=links, attributes=attributes
        )

    @contextlib.contextmanager
    def current(self) -> Iterator[Span]:
        """The span as the current one, in the request's log scope; an exception leaving it is recorded on it."""
        with logs.request_scope(self.request_id), trace.use_span(self.span, end_on_exit=False) as span:
            yield span

    def end(self) -> None:
        self.span.end()


@contextlib.contextmanager
def resumed_span(name: str, traceparent: str | None, *, request_id: str, attempt: int, reason: str) -> Iterator[Span]:
    """A span for work on one request that no message brought here (``reconcile`` resubmitting it): it
    continues the file's trace from the ``traceparent`` its ledger record kept, so the message published
    inside it carries that trace on. The span that was current (the timer invocation's, if any) is linked.
    Without a kept context the span stays under the current one."""
    current = otel_context.get_current()
    kept = propagation.context_from({propagation.TRACEPARENT: traceparent}) if traceparent else None
    invocation = propagation.span_context_of(current)
    links = [Link(invocation)] if kept is not None and invocation is not None else []
    attributes: dict[str, str | int] = {STAGE: name, REQUEST_ID: request_id, ATTEMPT: attempt, REASON: reason}
    with (
        logs.request_scope(request_id),
        TRACER.start_as_current_span(name, context=kept or current, links=links, attributes=attributes) as span,
    ):
        yield span


@contextlib.contextmanager
def continued(traceparent: str | None) -> Iterator[None]:
    """Makes the trace ``traceparent`` names current (no new span), so a message sent inside carries it on;
    without one, the current context stays."""
    context = propagation.context_from({propagation.TRACEPARENT: traceparent}) if traceparent else None
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, for the ledger to keep with a request; None outside a trace."""
    return propagation.current_headers().get(propagation.TRACEPARENT)


def set_outcome(outcome: str) -> None:
    trace.get_current_span().set_attribute(OUTCOME, outcome)


def described(record: RecordView) -> None:
    """Names ``record``'s request on the current span and in the log lines that follow (after a stored change, or
    for one handed on to be written later)."""
    logs.set_request_id(record.request_id)
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attributes: dict[str, Any] = {
        REQUEST_ID: record.request_id,
        INPUT_NAME: record.input_name,
        MODEL: record.model,
        ATTEMPT: record.attempt,
        OUTCOME: record.state.value,
    }
    if record.size is not None:
        attributes[BYTES] = record.size
    if record.rows_scored is not None:
        attributes[ROWS] = record.rows_scored
    if record.rows_failed is not None:
        attributes[BAD_ROWS] = record.rows_failed
    if record.error_code:
        attributes[ERROR_CODE] = record.error_code
    span.set_attributes(attributes)


def recorded(previous: RecordView | None, new: RecordView) -> None:
    """Called by the ledger after each stored transition."""
    described(new)
    state, before = new.state.value, previous.state.value if previous is not None else None
    if state == before:
        return
    labels = {"model": new.model}
    if state == "submitted" and previous is None:
        metrics.files_submitted.add(1, labels)
    elif state == "succeeded":
        metrics.files_scored.add(1, labels)
        metrics.rows_scored.add(new.rows_scored or 0, labels)
        metrics.rows_failed.add(new.rows_failed or 0, labels)
    elif state == "failed":
        metrics.files_failed.add(1, {**labels, "error_code": new.error_code or "unknown"})
    if state in ("succeeded", "failed") and new.submitted_at and new.updated_at:
        try:
            seconds = (_parse(new.updated_at) - _parse(new.submitted_at)).total_seconds()
        except ValueError:  # a record written by hand or by an older version: no latency to record
            return
        metrics.drop_to_output.record(max(0.0, seconds), {**labels, "outcome": state})


@contextlib.contextmanager
def endpoint_call(model: str, uri: str) -> Iterator[dict[str, str]]:
    """A client span around one POST to the scoring endpoint; yields the headers that carry the trace.
    The caller reports the answer with :func:`endpoint_answered`."""
    with TRACER.start_as_current_span(
        "POST score", kind=SpanKind.CLIENT, attributes={MODEL: model, "url.full": uri.split("?", 1)[0]}
    ):
        yield propagation.current_headers()


def endpoint_answered(model: str, status: int) -> None:
    trace.get_current_span().set_attribute(HTTP_STATUS, status)
    metrics.endpoint_responses.add(1, {"model": model, "status": str(status)})


def endpoint_retried(model: str) -> None:
    metrics.endpoint_retries.add(1, {"model": model})


# ---- the scoring server ---------------------------------------------------------------------------------

_PENDING_LIMIT = 10_000
_pending: OrderedDict[tuple[str, int], Context] = OrderedDict()
_pending_lock = threading.Lock()


@contextlib.contextmanager
def server_span(headers: Mapping[str, str]) -> Iterator[Span]:
    """The scoring server's span for one HTTP request, continuing the caller's trace."""
    parent = propagation.context_from(headers)
    with TRACER.start_as_current_span(
        "POST /score", context=parent or _ROOT, kind=SpanKind.SERVER, attributes={STAGE: "accept"}
    ) as span:
        yield span


def accepted(request_id: str, attempt: int, input_name: str, model: str, traceparent: str | None = None) -> None:
    """The server accepted an async request: note its context for the background job that will score it.

    The job continues the HTTP request's span, unless the request names a ``traceparent`` of another trace (a
    file of a batch, whose POST carried the first file's trace): then the job continues the file's own trace."""
    span = trace.get_current_span()
    span.set_attributes({REQUEST_ID: request_id, ATTEMPT: attempt, INPUT_NAME: input_name, MODEL: model})
    if not span.get_span_context().is_valid:
        return
    context = otel_context.get_current()
    own = propagation.context_from({propagation.TRACEPARENT: traceparent}) if traceparent else None
    own_span = propagation.span_context_of(own)
    if own is not None and own_span is not None and own_span.trace_id != span.get_span_context().trace_id:
        context = own
    with _pending_lock:
        _pending[(request_id, attempt)] = context
        while len(_pending) > _PENDING_LIMIT:
            _pending.popitem(last=False)


@contextlib.contextmanager
def job_span(request_id: str, attempt: int, input_name: str, model: str) -> Iterator[Span]:
    """The background job's span, under the span of the HTTP request that accepted it."""
    with _pending_lock:
        parent = _pending.pop((request_id, attempt), None)
    attributes: dict[str, str | int] = {
        STAGE: "score",
        REQUEST_ID: request_id,
        ATTEMPT: attempt,
        INPUT_NAME: input_name,
        MODEL: model,
    }
    with (
        logs.request_scope(request_id),
        TRACER.start_as_current_span("score", context=parent or _ROOT, attributes=attributes) as span,
    ):
        yield span


def job_result(status: str, rows: int, bad_rows: int, error_code: str | None) -> None:
    span = trace.get_current_span()
    span.set_attributes({OUTCOME: status, ROWS: rows, BAD_ROWS: bad_rows})
    if error_code:
        span.set_attribute(ERROR_CODE, error_code)
        span.set_status(Status(StatusCode.ERROR, error_code))


@contextlib.contextmanager
def stage(name: str, **attributes: Any) -> Iterator[Span]:
    with TRACER.start_as_current_span(name, attributes=attributes) as span:
        yield span


class StageClock:
    """Busy time of a stage that runs in pieces (per chunk); becomes one span from its first to its last piece,
    with the busy seconds as an attribute. Used where stages interleave chunk by chunk."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.first: int | None = None
        self.last: int | None = None
        self.busy_ns = 0
        self.count = 0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        start = time.time_ns()
        try:
            yield
        finally:
            end = time.time_ns()
            self.first = start if self.first is None else self.first
            self.last = end
            self.busy_ns += end - start
            self.count += 1

    def add(self, start_ns: int, end_ns: int, busy_ns: int | None = None) -> None:
        self.first = start_ns if self.first is None else min(self.first, start_ns)
        self.last = end_ns if self.last is None else max(self.last, end_ns)
        self.busy_ns += max(0, end_ns - start_ns if busy_ns is None else busy_ns)
        self.count += 1

    def emit(self, **attributes: Any) -> None:
        """One span under the current one, from the first piece's start to the last piece's end."""
        if self.first is None or self.last is None:
            return
        span = TRACER.start_span(
            self.name,
            start_time=self.first,
            attributes={"busy_ms": round(self.busy_ns / 1e6, 3), "pieces": self.count, **attributes},
        )
        span.end(end_time=self.last)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) and value else None


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
