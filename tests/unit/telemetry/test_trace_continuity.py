"""A file keeps one trace when its request is published again: ``reconcile`` resubmitting it (overdue, timed out,
output gone) and ``score_request`` scheduling a retry copy; reconcile's log lines name the request and that trace.

Spans go to an SDK tracer with an in-memory exporter (patched in for the pipeline's tracer, so no process-wide
provider is set). Messages are turned into Service Bus messages by the bus adapter's own conversion, which is
where ``traceparent`` / ``Diagnostic-Id`` are stamped on every send.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from azure.servicebus import ServiceBusMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span

from shared import bus as bus_adapter
from shared.contracts import (
    AsyncScoringBatch,
    AsyncScoringRequest,
    InferenceRequest,
    InferenceResult,
    OutputRef,
    ResultStatus,
)
from shared.ledger import Ledger, accepted
from shared.messages import PROP_SCORING_RETRY
from shared.ports import EndpointReply, OutgoingMessage
from shared.reconcile import reconcile
from shared.score import Delivery, score_batch, score_request
from shared.submit import submit_blob
from shared.telemetry import logs, pipeline, propagation
from shared.write import write_result
from tests.unit.functionapp.fakes import FakeBlobStore, FakeEndpoint, FixedClock, make_settings

SETTINGS = make_settings(RESULT_DEADLINE_MINUTES="30", MAX_RESUBMITS="1", SCORING_MAX_RETRIES="3")
T0 = FixedClock().now()
OVERDUE = timedelta(minutes=31)


class SendingBus:
    """Keeps each message as the Service Bus adapter would send it (trace properties included)."""

    def __init__(self) -> None:
        self.sent: list[ServiceBusMessage] = []

    def publish(self, topic: str, message: OutgoingMessage) -> None:
        self.sent.append(bus_adapter._to_sdk(message))

    def schedule(self, topic: str, message: OutgoingMessage, at: datetime) -> None:
        self.sent.append(bus_adapter._to_sdk(message))


def props(message: ServiceBusMessage) -> dict[str, str]:
    return {str(k): str(v) for k, v in (message.application_properties or {}).items()}


def trace_id_of(message: ServiceBusMessage) -> int:
    context = propagation.span_context_of(propagation.context_from(props(message)))
    assert context is not None, f"message {message.message_id} carries no trace: {props(message)}"
    return context.trace_id


@pytest.fixture
def records(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[logging.LogRecord]]:
    """Log records of ``shared`` with the trace and request fields (the record factory is put back afterwards)."""
    monkeypatch.setattr(logs, "_installed", False)
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())
    logs.install()
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    handler, logger = Keep(level=logging.INFO), logging.getLogger("shared")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield kept
    logger.removeHandler(handler)
    logger.setLevel(previous)


def dropped(blobs: FakeBlobStore, bus: SendingBus, name: str = "a.csv") -> tuple[InferenceRequest, Span]:
    """A file submitted by the blob trigger's span (the root of its trace)."""
    blobs.put("input", name, b"a,b\n1,2\n", {"session_id": "s"})
    with pipeline.submit_span("input", name) as root:
        submit_blob("input", name, settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=T0)
    return InferenceRequest.from_json(b"".join(bus.sent[-1].body)), root


def timer_span() -> Span:
    """The timer invocation's span: a trace of its own, as the host starts for each timer run."""
    return pipeline.TRACER.start_span("Invoke reconcile", context=pipeline._ROOT)


def run_reconcile(blobs: FakeBlobStore, bus: SendingBus, now: datetime, timer: Span) -> None:
    with trace.use_span(timer, end_on_exit=True):
        reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=now)


def reconcile_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        s for s in exporter.get_finished_spans() if s.attributes and s.attributes.get(pipeline.STAGE) == "reconcile"
    ]


def test_the_ledger_keeps_the_trace_the_blob_trigger_started(spans: InMemorySpanExporter) -> None:
    blobs, bus = FakeBlobStore(), SendingBus()
    request, root = dropped(blobs, bus)
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.traceparent is not None
    assert record.public_view()["traceparent"] == record.traceparent  # GET /api/requests/<id> shows it
    kept = propagation.span_context_of(propagation.context_from({"traceparent": record.traceparent}))
    assert kept is not None and (kept.trace_id, kept.span_id) == (root.get_span_context().trace_id,
                                                                   root.get_span_context().span_id)  # fmt: skip
    # A later transition in another trace does not replace it.
    with pipeline.TRACER.start_as_current_span("elsewhere", context=pipeline._ROOT):
        Ledger(blobs, "ledger").advance(request.request_id, accepted(request, T0, 0), now=T0)
    again = Ledger(blobs, "ledger").get(request.request_id)
    assert again is not None and again.traceparent == record.traceparent


def test_accepted_handed_over_from_the_message_keeps_the_trace_submit_kept(spans: InMemorySpanExporter) -> None:
    """score_request hands ``accepted`` to the writer, rebuilding the record from the message: the trace it
    rebuilds (the message's) is the one the record kept, so the writer's one write moves nothing but the state."""
    blobs, bus = FakeBlobStore(), SendingBus()
    request, _ = dropped(blobs, bus)
    kept = Ledger(blobs, "ledger").get(request.request_id)
    assert kept is not None and kept.traceparent is not None and request.ledger_etag is not None
    delivery = Delivery(request.to_json(), request.request_id, 1, 0,
                        traceparent=propagation.traceparent_of(props(bus.sent[0])))  # fmt: skip
    endpoint = FakeEndpoint()
    blobs.ops.clear()
    with pipeline.TRACER.start_as_current_span("score", context=pipeline._ROOT):
        score_request(delivery, route=SETTINGS.routes[0], settings=SETTINGS, blobs=blobs, bus=bus,
                      endpoint=endpoint, ledger=Ledger(blobs, "ledger"), now=T0)  # fmt: skip
    assert blobs.ops["read"] == blobs.ops["write"] == 0
    # Nothing was written, yet the step's span names the file as a written change would.
    [score_span] = [s for s in spans.get_finished_spans() if s.name == "score"]
    attributes = dict(score_span.attributes or {})
    assert (attributes["inference.request_id"], attributes["inference.attempt"]) == (request.request_id, 1)
    sent = AsyncScoringRequest.from_json(endpoint.bodies[0])
    output = OutputRef.inline(b"a,b,prediction\n1,2,0\n", request.format, None)
    result = InferenceResult.for_request(sent, output=output)
    with pipeline.TRACER.start_as_current_span("write", context=pipeline._ROOT):
        write_result(result.to_json(), settings=SETTINGS, blobs=blobs, ledger=Ledger(blobs, "ledger"), now=T0)
    assert blobs.ops["read"] == 0
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == "succeeded" and record.accepted_at is not None
    assert record.traceparent == kept.traceparent


def test_an_overdue_request_is_resubmitted_in_the_files_trace(
    spans: InMemorySpanExporter, records: list[logging.LogRecord]
) -> None:
    blobs, bus = FakeBlobStore(), SendingBus()
    request, root = dropped(blobs, bus)
    trace_id = root.get_span_context().trace_id
    first = bus.sent[0]
    timer = timer_span()
    assert timer.get_span_context().trace_id != trace_id
    records.clear()

    run_reconcile(blobs, bus, T0 + OVERDUE, timer)

    resubmitted = bus.sent[-1]
    assert resubmitted.message_id == f"{request.request_id}:2"
    assert trace_id_of(resubmitted) == trace_id_of(first) == trace_id
    assert props(resubmitted)["Diagnostic-Id"] == props(resubmitted)["traceparent"]
    (span,) = reconcile_spans(spans)
    assert span.context.trace_id == trace_id
    assert span.parent is not None and span.parent.span_id == root.get_span_context().span_id
    assert (
        dict(span.attributes or {}).items()
        >= {
            "inference.request_id": request.request_id,
            "inference.attempt": 2,
            "inference.reason": "result_overdue",
        }.items()
    )
    assert [link.context.span_id for link in span.links] == [timer.get_span_context().span_id]
    # The message was stamped inside the reconcile span: it is the parent the next stage continues.
    assert props(resubmitted)["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    # Reconcile's lines about the request name it and the file's trace.
    about = [r for r in records if r.name == "shared.reconcile"]
    assert about and all(r.request_id == request.request_id for r in about)  # type: ignore[attr-defined]
    assert all(r.trace_id == f"{trace_id:032x}" for r in about)  # type: ignore[attr-defined]


def test_timing_out_and_reopening_stay_in_the_files_trace(spans: InMemorySpanExporter) -> None:
    blobs, bus = FakeBlobStore(), SendingBus()
    request, root = dropped(blobs, bus)
    trace_id = root.get_span_context().trace_id
    run_reconcile(blobs, bus, T0 + OVERDUE, timer_span())  # attempt 2
    run_reconcile(blobs, bus, T0 + 2 * OVERDUE, timer_span())  # MAX_RESUBMITS=1: result_timeout
    reasons = [(s.attributes or {}).get("inference.reason") for s in reconcile_spans(spans)]
    assert reasons == ["result_overdue", "result_timeout"]
    timed_out = reconcile_spans(spans)[-1]
    assert timed_out.context.trace_id == trace_id
    assert (timed_out.attributes or {}).get("inference.error_code") == "result_timeout"

    # A late success, then storage loses the output: it is reopened and published in the same trace.
    output = OutputRef.inline(b"a,b,prediction\n1,2,0\n", request.format, None)
    result = InferenceResult(request_id=request.request_id, status=ResultStatus.SUCCEEDED, input_name="a.csv",
                             model=request.model, output=output, attempt=2)  # fmt: skip
    write_result(result.to_json(), settings=SETTINGS, blobs=blobs, ledger=Ledger(blobs, "ledger"), now=T0)
    blobs.delete("output", "a.csv")
    run_reconcile(blobs, bus, T0 + 3 * OVERDUE, timer_span())
    reopened = reconcile_spans(spans)[-1]
    assert (reopened.attributes or {}).get("inference.reason") == "output_gone"
    assert reopened.context.trace_id == trace_id == trace_id_of(bus.sent[-1])
    assert bus.sent[-1].message_id == f"{request.request_id}:3"


def test_a_record_without_a_kept_trace_is_resubmitted_under_the_current_span(spans: InMemorySpanExporter) -> None:
    """Records written with telemetry off (or by an older version) keep no trace: nothing to continue."""
    blobs, bus = FakeBlobStore(), SendingBus()
    blobs.put("input", "b.csv", b"a,b\n1,2\n", {"session_id": "s"})
    submit_blob("input", "b.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=T0)
    request = InferenceRequest.from_json(b"".join(bus.sent[0].body))
    assert "traceparent" not in props(bus.sent[0])
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.traceparent is None
    timer = timer_span()
    run_reconcile(blobs, bus, T0 + OVERDUE, timer)
    (span,) = reconcile_spans(spans)
    assert span.context.trace_id == timer.get_span_context().trace_id and span.links == ()
    assert trace_id_of(bus.sent[-1]) == timer.get_span_context().trace_id


def test_a_scheduled_retry_copy_stays_in_the_trace_of_the_message_it_retries(spans: InMemorySpanExporter) -> None:
    blobs, bus = FakeBlobStore(), SendingBus()
    request, root = dropped(blobs, bus)
    trace_id = root.get_span_context().trace_id
    route = SETTINGS.route(request.model)
    assert route is not None
    message = bus.sent[0]
    for retry in range(2):  # the original, then the copy it scheduled
        properties = props(message)
        delivery = Delivery(body=request.to_json(), message_id=str(message.message_id), delivery_count=1,
                            scoring_retry=int(properties.get(PROP_SCORING_RETRY, 0)))  # fmt: skip
        assert delivery.scoring_retry == retry
        with pipeline.message_span("score_request", "score_request", properties):
            score_request(delivery, route=route, settings=SETTINGS, blobs=blobs, bus=bus,
                          endpoint=FakeEndpoint([EndpointReply(503)]), ledger=Ledger(blobs, "ledger"), now=T0,
                          rng=random.Random(1))  # fmt: skip
        message = bus.sent[-1]
        assert int(props(message)[PROP_SCORING_RETRY]) == retry + 1
        assert trace_id_of(message) == trace_id
    stages = [s for s in spans.get_finished_spans() if (s.attributes or {}).get(pipeline.STAGE) == "score_request"]
    assert len(stages) == 2 and {s.context.trace_id for s in stages} == {trace_id}


def test_files_of_one_batch_keep_their_own_traces(spans: InMemorySpanExporter) -> None:
    """score_request's span continues the first message's trace; each file of the batch still names its own trace
    to the endpoint, whose job for it continues that trace, and a throttled file's retry copy carries it on."""
    blobs, bus = FakeBlobStore(), SendingBus()
    settings = make_settings(SCORING_MAX_RETRIES="3")
    (first, first_root), (second, second_root) = dropped(blobs, bus, "a.csv"), dropped(blobs, bus, "b.csv")
    messages = bus.sent[:2]
    deliveries = [
        Delivery(r.to_json(), r.request_id, 1, 0, traceparent=propagation.traceparent_of(props(m)))
        for r, m in ((first, messages[0]), (second, messages[1]))
    ]
    route = settings.routes[0]
    endpoint = FakeEndpoint([EndpointReply(429, "busy", 1.0)])
    with pipeline.message_span("score_request", "score_request", props(messages[0]), [props(messages[1])]) as span:
        score_batch(deliveries, route=route, settings=settings, blobs=blobs, bus=bus, endpoint=endpoint,
                    ledger=Ledger(blobs, "ledger"), now=T0, rng=random.Random(1))  # fmt: skip
    assert span.get_span_context().trace_id == first_root.get_span_context().trace_id
    [batch] = [AsyncScoringBatch.from_json(body) for body in endpoint.bodies]
    roots = [root.get_span_context().trace_id for root in (first_root, second_root)]
    named = [propagation.context_from({"traceparent": r.traceparent}) for r in batch.requests]
    assert [c.trace_id for c in map(propagation.span_context_of, named) if c] == roots
    copies = bus.sent[2:]
    assert [trace_id_of(c) for c in copies] == roots

    # At the endpoint: one POST in the first file's trace; the second file's job continues its own.
    with pipeline.server_span(propagation.current_headers(trace.set_span_in_context(span))):
        for request in batch.requests:
            pipeline.accepted(request.request_id, 1, request.input_name, request.model, request.traceparent)
    for request, root in zip(batch.requests, (first_root, second_root), strict=True):
        with pipeline.job_span(request.request_id, 1, request.input_name, request.model) as job:
            assert job.get_span_context().trace_id == root.get_span_context().trace_id
