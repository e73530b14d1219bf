"""A small file's ``accepted``, handed from score_request to the writer in the request's context: one ledger
write for both changes, and every way the handed-over record can be out of date decided on a read."""

from __future__ import annotations

import json
import random
from dataclasses import replace

from shared.contracts import (
    AsyncScoringRequest,
    DataFormat,
    ErrorInfo,
    InferenceRequest,
    InferenceResult,
    OutputRef,
    RequestState,
    iso,
)
from shared.ledger import Handover, Ledger, reopened, submitted, succeeded
from shared.score import Delivery, ScoreOutcome, score_request
from shared.submit import submit_blob
from shared.write import WriteOutcome, write_result

from .fakes import FakeBlobStore, FakeBus, FakeEndpoint, FixedClock, make_settings

SETTINGS = make_settings()
NOW = FixedClock().now()
OUT = b"a,b,prediction\n1,2,1\n"


def handed_over(blobs: FakeBlobStore, retry: int = 0) -> tuple[InferenceRequest, AsyncScoringRequest]:
    """A small file submitted and sent to the endpoint: the request message and what was POSTed."""
    bus, endpoint = FakeBus(), FakeEndpoint()
    blobs.put("input", "d/a.csv", b"a,b\n1,2\n", {"session_id": "s1"})
    submit_blob("input", "d/a.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=NOW)
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    delivery = Delivery(request.to_json(), request.request_id, 1, retry)
    ledger = Ledger(blobs, "ledger")
    outcome = score_request(delivery, route=SETTINGS.routes[0], settings=SETTINGS, blobs=blobs, bus=FakeBus(),
                            endpoint=endpoint, ledger=ledger, now=NOW, rng=random.Random(1))  # fmt: skip
    assert outcome == ScoreOutcome.ACCEPTED
    return request, AsyncScoringRequest.from_json(endpoint.bodies[0])


def result_of(sent: AsyncScoringRequest, *, error: ErrorInfo | None = None) -> InferenceResult:
    output = None if error else OutputRef.inline(OUT, DataFormat.CSV, None)
    return InferenceResult.for_request(sent, output=output, error=error, rows_scored=0 if error else 1)


def write(blobs: FakeBlobStore, result: InferenceResult) -> WriteOutcome:
    return write_result(result.to_json(), settings=SETTINGS, blobs=blobs, ledger=Ledger(blobs, "ledger"), now=NOW)


def ledger_ops(blobs: FakeBlobStore) -> dict[str, int]:
    return {kind: n for (kind, container), n in blobs.ops_by_container.items() if container == "ledger"}


def test_a_small_files_ledger_takes_two_writes_and_no_read_from_drop_to_output() -> None:
    blobs = FakeBlobStore()
    request, sent = handed_over(blobs)
    assert write(blobs, result_of(sent)) == WriteOutcome.WRITTEN
    assert ledger_ops(blobs) == {"write": 2}  # submitted, then succeeded with accepted in it
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED
    assert (record.accepted_at, record.output_location, record.rows_scored) == (iso(NOW), "output/d/a.csv", 1)


def test_scoring_retries_travel_with_the_handover() -> None:
    blobs = FakeBlobStore()
    request, sent = handed_over(blobs, retry=2)
    write(blobs, result_of(sent))
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.scoring_retries == 2


def test_a_result_already_recorded_fails_the_etag_and_is_not_recorded_again() -> None:
    """Two copies of the file were scored (a redelivery the endpoint no longer knew): both carry the handover
    from the same ETag; the second write fails its condition, reads, and leaves the success as it is."""
    blobs = FakeBlobStore()
    request, sent = handed_over(blobs)
    write(blobs, result_of(sent))
    first = blobs.read("ledger", f"requests/{request.request_id}.json")
    assert write(blobs, result_of(sent)) == WriteOutcome.ALREADY_WRITTEN
    assert blobs.read("ledger", f"requests/{request.request_id}.json") == first


def test_a_record_reconcile_moved_on_is_read_and_the_late_success_recorded() -> None:
    blobs = FakeBlobStore()
    request, sent = handed_over(blobs)
    newer = replace(request, attempt=2, ledger_etag=None)
    Ledger(blobs, "ledger").advance(request.request_id, submitted(newer, NOW), now=NOW)
    blobs.ops_by_container.clear()
    assert write(blobs, result_of(sent)) == WriteOutcome.WRITTEN
    assert ledger_ops(blobs) == {"write": 2, "read": 1}  # the failed condition, the read, the write
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED and record.attempt == 2


def test_a_failed_result_reads_the_record_it_is_decided_on() -> None:
    """A failure is recorded only if no success stands: it never trusts the handed-over record."""
    blobs = FakeBlobStore()
    request, sent = handed_over(blobs)
    base = Ledger(blobs, "ledger").get(request.request_id)
    assert base is not None
    Ledger(blobs, "ledger").advance(request.request_id, succeeded(base, NOW, "output/d/a.csv", 1, 0, "c"), now=NOW)
    assert write(blobs, result_of(sent, error=ErrorInfo("internal_error", "boom"))) == WriteOutcome.SUPERSEDED
    assert blobs.names("output") == []


def test_a_handover_for_another_attempt_or_request_is_not_used() -> None:
    blobs = FakeBlobStore()
    request, sent = handed_over(blobs)
    handover = Handover.from_context(sent.context, request.request_id, 1)
    assert handover is not None
    assert Handover.from_context(sent.context, request.request_id, 2) is None
    assert Handover.from_context(sent.context, "f" * 32, 1) is None
    assert Handover.from_context(json.dumps({"something": "else"}), request.request_id, 1) is None
    assert Handover.from_context("not json", request.request_id, 1) is None
    # A record naming another input than the one the request id stands for is not used.
    elsewhere = replace(handover.record, input_container="ledger")
    assert Handover.from_context(Handover(elsewhere, handover.etag).context, request.request_id, 1) is None
    # A success whose context is not a handover of its own is written after a read.
    other = replace(result_of(sent), context=json.dumps({"handover": 1, "etag": "x", "record": {"state": "?"}}))
    blobs.ops_by_container.clear()
    assert write(blobs, other) == WriteOutcome.WRITTEN
    assert ledger_ops(blobs) == {"read": 1, "write": 1}


def test_a_reopened_request_written_again_by_an_old_handover_is_decided_on_a_read() -> None:
    """reconcile reopened a success whose output was gone (attempt 2); the first attempt's result arrives
    again with its handover: the ETag is stale, the read record says attempt 2 submitted, and the success
    is recorded for it."""
    blobs = FakeBlobStore()
    request, sent = handed_over(blobs)
    write(blobs, result_of(sent))
    Ledger(blobs, "ledger").advance(request.request_id, reopened(2, NOW), now=NOW)
    blobs.delete("output", "d/a.csv")
    assert write(blobs, result_of(sent)) == WriteOutcome.WRITTEN
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED and record.attempt == 2


def test_a_refused_output_with_a_handover_is_decided_on_the_stored_record() -> None:
    """A success naming an output the writer may not copy becomes a failure, and a failure never trusts the
    handed-over record: a success already recorded stands, and no error record appears beside its output."""
    blobs = FakeBlobStore()
    request, sent = handed_over(blobs)
    write(blobs, result_of(sent))
    elsewhere = OutputRef(format=DataFormat.CSV, compression=None, size=len(OUT), sha256="0" * 64,
                          blob_url="https://elsewhere.example/results/x.csv")  # fmt: skip
    assert write(blobs, replace(result_of(sent), output=elsewhere)) == WriteOutcome.SUPERSEDED
    assert blobs.names("output") == ["d/a.csv"]
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED
