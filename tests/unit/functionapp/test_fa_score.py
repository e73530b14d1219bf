"""score use case with fakes: accepted, back-off by rescheduling, permanent rejection as an error record, and
batches of small files (one request per batch, each file its own outcome, ``accepted`` handed to the writer)."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import replace
from datetime import timedelta
from unittest.mock import patch

import pytest

from shared.contracts import (
    Admission,
    AsyncScoringBatch,
    AsyncScoringBatchReply,
    AsyncScoringRequest,
    FileAdmission,
    InferenceRequest,
    RequestState,
    iso,
)
from shared.ledger import Handover, Ledger, LedgerRecord, succeeded
from shared.ledger import submitted as ledger_submitted
from shared.limits import BATCH_CALL_BUDGET_SECONDS
from shared.messages import PROP_SCORING_RETRY, request_message
from shared.ports import EndpointReply
from shared.score import Delivery, ScoreOutcome, inline_within, score_batch, score_request
from shared.settings import Settings
from shared.submit import submit_blob

from .fakes import FakeBlobStore, FakeBus, FakeEndpoint, FixedClock, make_settings

# Every file counts as large here (SCORING_BATCH_MAX_FILE_BYTES 0), so "accepted" is written by score_request;
# the small files' handover has its own tests below.
SETTINGS = make_settings(SCORING_RETRY_BASE_SECONDS="4", SCORING_RETRY_MAX_SECONDS="60", SCORING_MAX_RETRIES="3",
                         SCORING_BATCH_MAX_FILE_BYTES="0")  # fmt: skip
NOW = FixedClock().now()


def submitted(blobs: FakeBlobStore, name: str = "a.csv", settings: Settings = SETTINGS) -> InferenceRequest:
    bus = FakeBus()
    blobs.put("input", name, b"a,b\n1,2\n", {"session_id": "s1"})
    submit_blob("input", name, settings=settings, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=NOW)
    return InferenceRequest.from_json(bus.sent[0].message.body)


def deliver(request: InferenceRequest, retry: int = 0, count: int = 1) -> Delivery:
    """The message as delivered the ``count``-th time (1: its first delivery)."""
    return Delivery(body=request.to_json(), message_id=request.request_id, delivery_count=count, scoring_retry=retry)


def score(blobs: FakeBlobStore, bus: FakeBus, endpoint: FakeEndpoint, delivery: Delivery, model: str = "default"):  # type: ignore[no-untyped-def]
    route = SETTINGS.route(model)
    assert route is not None
    return score_request(delivery, route=route, settings=SETTINGS, blobs=blobs, bus=bus, endpoint=endpoint,
                         ledger=Ledger(blobs, "ledger"), now=NOW, rng=random.Random(1))  # fmt: skip


def test_accepted_request_posts_a_sas_url_and_marks_the_ledger() -> None:
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), FakeEndpoint()
    request = submitted(blobs)
    assert score(blobs, bus, endpoint, deliver(request)) == ScoreOutcome.ACCEPTED
    [body] = endpoint.bodies
    sent = AsyncScoringRequest.from_json(body)
    assert sent.blob_url.startswith("https://acct.blob.example/input/a.csv?sig=")
    assert "ttl=3600" in sent.blob_url
    assert (sent.reply.topic, sent.reply.session_id, sent.input_name, sent.model) == (
        "inference-results", "s1", "a.csv", "default")  # fmt: skip
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.ACCEPTED and record.accepted_at is not None
    assert [m.request_id for m in Ledger(blobs, "ledger").inflight()] == [request.request_id]
    assert bus.sent == []


@pytest.mark.parametrize(("status", "retry_after"), [(429, 120.0), (503, None), (0, None), (502, 1.0)])
def test_throttling_reschedules_a_copy_and_completes_normally(status: int, retry_after: float | None) -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    request = submitted(blobs)
    endpoint = FakeEndpoint([EndpointReply(status, "busy", retry_after)])
    assert score(blobs, bus, endpoint, deliver(request)) == ScoreOutcome.RESCHEDULED
    [copy] = bus.sent
    assert copy.topic == "inference-requests" and copy.at is not None
    delay = (copy.at - NOW).total_seconds()
    assert delay >= (retry_after or 0) and 2.0 <= delay <= max(4.0, retry_after or 0)
    assert copy.message.message_id == f"{request.request_id}:1:retry1"
    assert copy.message.session_id == "s1" and copy.message.body == request.to_json()
    assert copy.message.application_properties[PROP_SCORING_RETRY] == 1
    assert copy.message.application_properties["model"] == "default"
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.SUBMITTED


def test_rescheduling_twice_for_the_same_delivery_uses_the_same_message_id() -> None:
    blobs = FakeBlobStore()
    request = submitted(blobs)
    buses = [FakeBus(), FakeBus()]
    for bus in buses:  # the function died after scheduling: the original is delivered again
        score(blobs, bus, FakeEndpoint([EndpointReply(429)]), deliver(request, retry=2))
    assert (
        buses[0].sent[0].message.message_id == buses[1].sent[0].message.message_id == f"{request.request_id}:1:retry3"
    )


def test_backoff_grows_exponentially_with_a_cap_and_honours_retry_after() -> None:
    rng = random.Random(7)
    policy = SETTINGS.scoring_retry
    delays = [policy.delay(n, None, rng) for n in range(8)]
    assert all(4 * 2**n * 0.5 <= d <= 4 * 2**n for n, d in enumerate(delays[:4]))
    assert all(30 <= d <= 60 for d in delays[4:])
    assert policy.delay(0, 500.0, rng) == 500.0
    assert policy.delay(0, 10**9, rng) == 3600.0
    assert not policy.gives_up(2) and policy.gives_up(3)


def test_gives_up_after_max_retries_with_an_error_record_not_a_dead_letter() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    request = submitted(blobs)
    outcome = score(blobs, bus, FakeEndpoint([EndpointReply(503)]), deliver(request, retry=3))
    assert outcome == ScoreOutcome.GAVE_UP and bus.sent == []
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.FAILED and record.error_code == "endpoint_unavailable"
    assert blobs.names("output") == ["errors/a.csv.error.json"]


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_request"), (401, "endpoint_rejected"),
                                              (403, "endpoint_rejected"), (404, "endpoint_rejected")])  # fmt: skip
def test_permanent_rejection_records_the_error_and_completes(status: int, code: str) -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    request = submitted(blobs)
    endpoint = FakeEndpoint([EndpointReply(status, "nope")])
    assert score(blobs, bus, endpoint, deliver(request)) == ScoreOutcome.REJECTED
    document = json.loads(blobs.read("output", "errors/a.csv.error.json")[0])
    assert document["error"]["code"] == code and document["request_id"] == request.request_id
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.FAILED
    # A redelivery is skipped without calling the endpoint again.
    assert score(blobs, bus, endpoint, deliver(request, count=2)) == ScoreOutcome.SKIPPED
    assert len(endpoint.bodies) == 1 and bus.sent == []


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "blob_forbidden", "message": "SAS refused"}},
        {"code": "blob_forbidden", "message": "SAS refused"},
    ],
)
def test_endpoint_error_code_in_the_body_is_kept(body: dict[str, object]) -> None:
    blobs = FakeBlobStore()
    request = submitted(blobs)
    outcome = score(blobs, FakeBus(), FakeEndpoint([EndpointReply(400, json.dumps(body))]), deliver(request))
    assert outcome == ScoreOutcome.REJECTED
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and (record.error_code, record.error_message) == ("blob_forbidden", "SAS refused")


def test_stale_duplicate_and_finished_requests_are_skipped_without_posting() -> None:
    blobs, endpoint = FakeBlobStore(), FakeEndpoint()
    request = submitted(blobs)
    score(blobs, FakeBus(), endpoint, deliver(request))
    assert score(blobs, FakeBus(), endpoint, deliver(request, count=2)) == ScoreOutcome.SKIPPED  # already accepted
    newer = InferenceRequest.from_json(json.loads(json.dumps({**json.loads(request.to_json()), "attempt": 2})))
    assert score(blobs, FakeBus(), endpoint, deliver(newer)) == ScoreOutcome.ACCEPTED
    assert score(blobs, FakeBus(), endpoint, deliver(request, count=2)) == ScoreOutcome.SKIPPED  # attempt 1 is stale
    assert len(endpoint.bodies) == 2
    assert AsyncScoringRequest.from_json(endpoint.bodies[1]).attempt == 2


def ledger_blob(blobs: FakeBlobStore, request: InferenceRequest) -> bytes:
    return blobs.read("ledger", f"requests/{request.request_id}.json")[0]


def test_the_first_delivery_writes_accepted_against_the_etag_submit_named_without_a_read() -> None:
    fast, read = FakeBlobStore(), FakeBlobStore()
    request, same = submitted(fast), submitted(read)
    assert request.ledger_etag is not None
    fast.ops.clear()
    assert score(fast, FakeBus(), FakeEndpoint(), deliver(request)) == ScoreOutcome.ACCEPTED
    assert +fast.ops == {"write": 1}
    # The record it wrote is the one the read path writes from the stored record.
    assert score(read, FakeBus(), FakeEndpoint(), deliver(same, count=2)) == ScoreOutcome.ACCEPTED
    assert ledger_blob(fast, request) == ledger_blob(read, same)


def test_a_record_that_moved_on_since_submit_fails_the_etag_and_is_decided_on_a_read() -> None:
    """A duplicate of the message the broker let through, after a result was already written: the endpoint is
    asked again, but the ledger keeps the result."""
    blobs, endpoint = FakeBlobStore(), FakeEndpoint()
    request = submitted(blobs)
    base = Ledger(blobs, "ledger").get(request.request_id)
    assert base is not None
    Ledger(blobs, "ledger").advance(request.request_id, succeeded(base, NOW, "output/a.csv", 1, 0, "c"), now=NOW)
    blobs.ops.clear()
    assert score(blobs, FakeBus(), endpoint, deliver(request)) == ScoreOutcome.ACCEPTED
    assert +blobs.ops == {"write": 1, "read": 1} and len(endpoint.bodies) == 1
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED


def without_ledger_etag(request: InferenceRequest) -> InferenceRequest:
    """The message as code before ``ledger_etag`` published it."""
    body = json.loads(request.to_json())
    del body["ledger_etag"]
    return InferenceRequest.from_json(json.dumps(body))


@pytest.mark.parametrize(
    ("case", "count", "retry", "age"),
    [("no ETag in the message", 1, 0, 0), ("redelivered", 2, 0, 0), ("a rescheduled copy", 1, 1, 0),
     ("half a result deadline old", 1, 0, 30)],
)  # fmt: skip
def test_the_record_is_read_when_the_message_cannot_vouch_for_it(case: str, count: int, retry: int, age: int) -> None:
    blobs, endpoint = FakeBlobStore(), FakeEndpoint()
    request = submitted(blobs)
    if case == "no ETag in the message":
        request = without_ledger_etag(request)
    assert SETTINGS.result_deadline_minutes == 60
    blobs.ops.clear()
    route = SETTINGS.routes[0]
    outcome = score_request(deliver(request, retry=retry, count=count), route=route, settings=SETTINGS, blobs=blobs,
                            bus=FakeBus(), endpoint=endpoint, ledger=Ledger(blobs, "ledger"),
                            now=NOW + timedelta(minutes=age), rng=random.Random(1))  # fmt: skip
    assert outcome == ScoreOutcome.ACCEPTED and +blobs.ops == {"read": 1, "write": 1}


def test_an_old_first_delivery_of_an_attempt_reconcile_replaced_is_skipped() -> None:
    """Reconcile submits attempt 2 only a result deadline after the record's last change; the first delivery of
    attempt 1 coming that late reads the record and is not sent."""
    blobs, endpoint = FakeBlobStore(), FakeEndpoint()
    request = submitted(blobs)
    newer = InferenceRequest.from_json(json.dumps({**json.loads(request.to_json()), "attempt": 2, "ledger_etag": None}))
    later = NOW + timedelta(minutes=61)
    Ledger(blobs, "ledger").advance(request.request_id, ledger_submitted(newer, later), now=later)
    outcome = score_request(deliver(request), route=SETTINGS.routes[0], settings=SETTINGS, blobs=blobs, bus=FakeBus(),
                            endpoint=endpoint, ledger=Ledger(blobs, "ledger"), now=later)  # fmt: skip
    assert outcome == ScoreOutcome.SKIPPED and endpoint.bodies == []


def test_a_rejection_records_failed_against_the_known_record_without_a_read() -> None:
    blobs = FakeBlobStore()
    request = submitted(blobs)
    blobs.ops.clear()
    assert score(blobs, FakeBus(), FakeEndpoint([EndpointReply(400, "no")]), deliver(request)) == ScoreOutcome.REJECTED
    assert blobs.ops["read"] == 0
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.FAILED


def test_each_route_posts_its_own_model() -> None:
    blobs, endpoint = FakeBlobStore(), FakeEndpoint()
    request = submitted(blobs, "churn-v2/a.csv")
    assert request.model == "churn-v2"
    assert request_message(request).application_properties["model"] == "churn-v2"
    score(blobs, FakeBus(), endpoint, deliver(request), model="churn-v2")
    assert AsyncScoringRequest.from_json(endpoint.bodies[0]).model == "churn-v2"


def test_sas_ttl_follows_the_setting() -> None:
    settings = make_settings(SAS_TTL_MINUTES="5")
    blobs, endpoint = FakeBlobStore(), FakeEndpoint()
    request = submitted(blobs, settings=settings)
    route = settings.routes[0]
    score_request(deliver(request), route=route, settings=settings, blobs=blobs, bus=FakeBus(), endpoint=endpoint,
                  ledger=Ledger(blobs, "ledger"), now=NOW + timedelta(seconds=1))  # fmt: skip
    assert "ttl=300" in AsyncScoringRequest.from_json(endpoint.bodies[0]).blob_url


# ------------------------------------------------------------------------------------------------- batches


class BatchEndpoint:
    """Answers like the scoring service: a batch with one admission per file, a file it already has as a
    duplicate, the names in ``refuse`` as rejected; ``replies`` are answered first, one per call (None: answer
    that call as the service would)."""

    def __init__(self, *replies: EndpointReply | None, refuse: frozenset[str] = frozenset()) -> None:
        self.replies = list(replies)
        self.refuse = refuse
        self.bodies: list[bytes] = []
        self.taken: list[tuple[str, int]] = []  # (request_id, attempt) of every file queued, in order

    def post(self, body: bytes) -> EndpointReply:
        self.bodies.append(body)
        scripted = self.replies.pop(0) if self.replies else None
        if scripted is not None:
            return scripted
        document = json.loads(body)
        if document["schema"] == "async-scoring-request":
            self.taken.append((document["request_id"], document["attempt"]))
            return EndpointReply(202, '{"status": "accepted"}')
        admissions = []
        for r in AsyncScoringBatch.from_json(body).requests:
            key = (r.request_id, r.attempt)
            if r.input_name in self.refuse:
                admissions.append(FileAdmission(*key, Admission.REJECTED, "invalid_name", f"{r.input_name}: no"))
            elif key in self.taken:
                admissions.append(FileAdmission(*key, Admission.DUPLICATE))
            else:
                self.taken.append(key)
                admissions.append(FileAdmission(*key, Admission.ACCEPTED))
        return EndpointReply(202, AsyncScoringBatchReply(tuple(admissions)).to_json().decode())

    def batches(self) -> list[list[str]]:
        """Input names of each batch POSTed (a single request as a list of one)."""
        out = []
        for body in self.bodies:
            document = json.loads(body)
            names = [r["input_name"] for r in document["requests"]] if "requests" in document else None
            out.append(names or [document["input_name"]])
        return out


BATCH_SETTINGS = make_settings(SCORING_BATCH_MAX_FILES="3", SCORING_BATCH_MAX_FILE_BYTES="100",
                               SCORING_MAX_RETRIES="3", MAX_INPUT_BYTES="100000")  # fmt: skip


def small_files(blobs: FakeBlobStore, count: int, size: int = 20, prefix: str = "f") -> list[InferenceRequest]:
    bus = FakeBus()
    for i in range(count):
        name = f"{prefix}{i}.csv"
        blobs.put("input", name, b"a\n" + b"1\n" * ((size - 2) // 2), {"session_id": f"s{i}"})
        submit_blob("input", name, settings=BATCH_SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"),
                    now=NOW)  # fmt: skip
    return [InferenceRequest.from_json(s.message.body) for s in bus.sent]


def score_many(blobs: FakeBlobStore, bus: FakeBus, endpoint: object, deliveries: list[Delivery]) -> list[ScoreOutcome]:
    return score_batch(deliveries, route=BATCH_SETTINGS.routes[0], settings=BATCH_SETTINGS, blobs=blobs, bus=bus,
                       endpoint=endpoint, ledger=Ledger(blobs, "ledger"), now=NOW, rng=random.Random(3))  # type: ignore[arg-type]  # fmt: skip


def states(blobs: FakeBlobStore, requests: list[InferenceRequest]) -> list[str]:
    ledger = Ledger(blobs, "ledger")
    return [str(record.state) if (record := ledger.get(r.request_id)) else "-" for r in requests]


def test_small_files_go_several_to_a_request_each_with_its_own_reply_session() -> None:
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), BatchEndpoint()
    requests = small_files(blobs, 7)
    outcomes = score_many(blobs, bus, endpoint, [deliver(r) for r in requests])
    assert outcomes == [ScoreOutcome.ACCEPTED] * 7
    assert endpoint.batches() == [["f0.csv", "f1.csv", "f2.csv"], ["f3.csv", "f4.csv", "f5.csv"], ["f6.csv"]]
    first = AsyncScoringBatch.from_json(endpoint.bodies[0])
    assert [r.reply.session_id for r in first.requests] == ["s0", "s1", "s2"]
    assert all("sig=fake" in r.blob_url for r in first.requests)
    assert states(blobs, requests) == ["submitted"] * 7 and bus.sent == []
    assert sorted(endpoint.taken) == sorted((r.request_id, 1) for r in requests)


def test_small_files_reach_the_endpoint_with_the_bytes_submit_read() -> None:
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), BatchEndpoint()
    requests = small_files(blobs, 4)
    score_many(blobs, bus, endpoint, [deliver(r) for r in requests])
    batch, alone = AsyncScoringBatch.from_json(endpoint.bodies[0]), AsyncScoringRequest.from_json(endpoint.bodies[1])
    sent = [*batch.requests, alone]
    assert [r.input_bytes() for r in sent] == [blobs.blobs["input", f"f{i}.csv"].data for i in range(4)]


def test_a_batch_sends_inline_inputs_only_up_to_its_budget() -> None:
    assert inline_within(["aaaa", None, "bb", "ccc", "d"], 7) == [True, False, True, False, True]
    assert inline_within(["a" * 8], 7) == [False]
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), BatchEndpoint()
    requests = small_files(blobs, 3)
    each = len(requests[0].input_b64 or "")
    with patch("shared.score.BATCH_INLINE_MAX_CHARS", 2 * each):
        score_many(blobs, bus, endpoint, [deliver(r) for r in requests])
    batch = AsyncScoringBatch.from_json(endpoint.bodies[0])
    assert [r.input_b64 is not None for r in batch.requests] == [True, True, False]
    assert all("sig=fake" in r.blob_url for r in batch.requests)  # the third is read by the endpoint


def handed_over(endpoint: BatchEndpoint) -> dict[str, Handover]:
    """The handover each file POSTed carries, by request id."""
    out = {}
    for body in endpoint.bodies:
        document = json.loads(body)
        for entry in document.get("requests", [document]):
            request = AsyncScoringRequest.from_fields({"model": "default", "mode": "async", **entry}, "test")
            handover = Handover.from_context(request.context, request.request_id, request.attempt)
            assert handover is not None, request.request_id
            out[request.request_id] = handover
    return out


def test_small_files_hand_accepted_to_the_writer_without_a_ledger_request() -> None:
    blobs, endpoint = FakeBlobStore(), BatchEndpoint()
    requests = small_files(blobs, 3)
    stored = {r.request_id: blobs.read("ledger", f"requests/{r.request_id}.json") for r in requests}
    blobs.ops.clear()
    assert score_many(blobs, FakeBus(), endpoint, [deliver(r) for r in requests]) == [ScoreOutcome.ACCEPTED] * 3
    assert blobs.ops["write"] == blobs.ops["read"] == 0  # only the SAS URLs, made without a request
    handovers = handed_over(endpoint)
    for request in requests:
        handover = handovers[request.request_id]
        raw, etag = stored[request.request_id]
        # The record is the stored one moved on to "accepted", and the ETag that of the stored one.
        assert handover.etag == etag == request.ledger_etag
        assert handover.record.state == RequestState.ACCEPTED and handover.record.accepted_at == iso(NOW)
        assert replace(handover.record, state=RequestState.SUBMITTED, accepted_at=None) == LedgerRecord.from_json(raw)


def test_a_redelivered_small_file_is_handed_over_from_the_record_it_read() -> None:
    blobs, endpoint = FakeBlobStore(), BatchEndpoint()
    [request] = small_files(blobs, 1)
    etag = blobs.read("ledger", f"requests/{request.request_id}.json")[1]
    blobs.ops.clear()
    assert score_many(blobs, FakeBus(), endpoint, [deliver(request, retry=2, count=3)]) == [ScoreOutcome.ACCEPTED]
    assert +blobs.ops == {"read": 1}
    handover = handed_over(endpoint)[request.request_id]
    assert handover.etag == etag and handover.record.scoring_retries == 2


def test_a_record_too_long_to_hand_over_is_written_accepted() -> None:
    blobs, endpoint = FakeBlobStore(), BatchEndpoint()
    [request] = small_files(blobs, 1, prefix="é" * 600)  # escaped in the JSON, percent-encoded in the URL
    assert len(request.blob_name) < 1024
    assert score_many(blobs, FakeBus(), endpoint, [deliver(request)]) == [ScoreOutcome.ACCEPTED]
    sent = AsyncScoringRequest.from_json(endpoint.bodies[0])
    assert sent.context is None and states(blobs, [request]) == ["accepted"]


def test_a_batch_with_one_bad_file_scores_the_others_and_records_its_error() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    requests = small_files(blobs, 3)
    endpoint = BatchEndpoint(refuse=frozenset({"f1.csv"}))
    outcomes = score_many(blobs, bus, endpoint, [deliver(r) for r in requests])
    assert outcomes == [ScoreOutcome.ACCEPTED, ScoreOutcome.REJECTED, ScoreOutcome.ACCEPTED]
    assert len(endpoint.bodies) == 1 and states(blobs, requests) == ["submitted", "failed", "submitted"]
    assert blobs.names("output") == ["errors/f1.csv.error.json"]
    document = json.loads(blobs.read("output", "errors/f1.csv.error.json")[0])
    assert document["error"] == {"code": "invalid_name", "message": "f1.csv: no"}


def test_an_oversized_file_gets_a_request_of_its_own() -> None:
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), BatchEndpoint()
    requests = small_files(blobs, 2) + small_files(blobs, 1, size=500, prefix="big")
    assert requests[2].size > BATCH_SETTINGS.batch_max_file_bytes
    outcomes = score_many(blobs, bus, endpoint, [deliver(requests[0]), deliver(requests[2]), deliver(requests[1])])
    assert outcomes == [ScoreOutcome.ACCEPTED] * 3
    assert endpoint.batches() == [["big0.csv"], ["f0.csv", "f1.csv"]]
    assert AsyncScoringRequest.from_json(endpoint.bodies[0]).input_name == "big0.csv"  # the single-file contract


def test_a_request_twice_in_a_batch_or_across_batches_is_sent_once() -> None:
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), BatchEndpoint()
    a, b = small_files(blobs, 2)
    first = score_many(blobs, bus, endpoint, [deliver(a), deliver(b), deliver(a), deliver(a, retry=1)])
    assert first == [ScoreOutcome.ACCEPTED, ScoreOutcome.ACCEPTED, ScoreOutcome.SKIPPED, ScoreOutcome.SKIPPED]
    assert endpoint.batches() == [["f0.csv", "f1.csv"]]
    # Redelivered in a later batch before their results were written: small files were not recorded accepted, so
    # they are sent again and the endpoint answers them as duplicates; once a result is written, nothing is sent.
    assert score_many(blobs, bus, endpoint, [deliver(b, count=2), deliver(a, count=2)]) == [ScoreOutcome.ACCEPTED] * 2
    assert len(endpoint.bodies) == 2 and endpoint.taken == [(a.request_id, 1), (b.request_id, 1)]
    base = Ledger(blobs, "ledger").get(a.request_id)
    assert base is not None
    Ledger(blobs, "ledger").advance(a.request_id, succeeded(base, NOW, "output/f0.csv", 1, 0, "c"), now=NOW)
    assert score_many(blobs, bus, endpoint, [deliver(a, count=3)]) == [ScoreOutcome.SKIPPED]
    assert len(endpoint.bodies) == 2


def test_two_batches_racing_on_the_same_file_are_told_it_is_a_duplicate() -> None:
    """Two invocations read the ledger before either marked the file accepted: the endpoint's own
    de-duplication answers the second copy ``duplicate``, so the file is queued (and scored) once."""
    blobs, endpoint = FakeBlobStore(), BatchEndpoint()
    a, b, c = small_files(blobs, 3)
    endpoint.taken.append((a.request_id, 1))  # the racing invocation's batch got there first
    outcomes = score_many(blobs, FakeBus(), endpoint, [deliver(a), deliver(b), deliver(c)])
    assert outcomes == [ScoreOutcome.ACCEPTED] * 3
    assert endpoint.taken.count((a.request_id, 1)) == 1 and states(blobs, [a]) == ["submitted"]


@pytest.mark.parametrize("status", [429, 503, 0])
def test_a_batch_answered_429_is_retried_whole_later_and_nothing_is_sent_twice(status: int) -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    requests = small_files(blobs, 5)
    endpoint = BatchEndpoint(EndpointReply(status, "busy", 30.0))
    outcomes = score_many(blobs, bus, endpoint, [deliver(r) for r in requests])
    # The first batch of three met the 429; the second was not sent at all, and every file got a scheduled copy.
    assert outcomes == [ScoreOutcome.RESCHEDULED] * 5 and len(endpoint.bodies) == 1
    assert [s.message.message_id for s in bus.sent] == [f"{r.request_id}:1:retry1" for r in requests]
    assert all(s.at is not None and (s.at - NOW).total_seconds() >= 30 for s in bus.sent)
    assert states(blobs, requests) == ["submitted"] * 5 and endpoint.taken == []
    # The copies come back together: each file is queued exactly once.
    copies = [Delivery(s.message.body, s.message.message_id, 1, 1) for s in bus.sent]
    assert score_many(blobs, FakeBus(), endpoint, copies) == [ScoreOutcome.ACCEPTED] * 5
    assert sorted(endpoint.taken) == sorted((r.request_id, 1) for r in requests)


def test_a_429_midway_leaves_what_was_accepted_and_retries_the_rest() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    requests = small_files(blobs, 6)
    endpoint = BatchEndpoint(None, EndpointReply(429, "busy", 5.0))  # the second batch is throttled
    outcomes = score_many(blobs, bus, endpoint, [deliver(r) for r in requests])
    assert outcomes == [ScoreOutcome.ACCEPTED] * 3 + [ScoreOutcome.RESCHEDULED] * 3
    assert endpoint.taken == [(r.request_id, 1) for r in requests[:3]] and states(blobs, requests) == ["submitted"] * 6
    assert [s.message.message_id for s in bus.sent] == [f"{r.request_id}:1:retry1" for r in requests[3:]]


def test_a_batch_after_the_last_retry_gives_up_with_an_error_record_per_file() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    requests = small_files(blobs, 2)
    endpoint = BatchEndpoint(EndpointReply(503, "down"))
    outcomes = score_many(blobs, bus, endpoint, [deliver(r, retry=3) for r in requests])
    assert outcomes == [ScoreOutcome.GAVE_UP] * 2 and bus.sent == []
    assert blobs.names("output") == ["errors/f0.csv.error.json", "errors/f1.csv.error.json"]


def test_an_endpoint_that_refuses_batches_gets_the_files_one_by_one() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    requests = small_files(blobs, 3)
    refusal = EndpointReply(
        400, json.dumps({"code": "invalid_request", "message": "expected schema 'async-scoring-request'"})
    )
    endpoint = BatchEndpoint(refusal)
    assert score_many(blobs, bus, endpoint, [deliver(r) for r in requests]) == [ScoreOutcome.ACCEPTED] * 3
    assert endpoint.batches() == [["f0.csv", "f1.csv", "f2.csv"], ["f0.csv"], ["f1.csv"], ["f2.csv"]]
    assert sorted(endpoint.taken) == sorted((r.request_id, 1) for r in requests)


def test_an_unreadable_message_is_completed_without_holding_back_its_batch() -> None:
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), BatchEndpoint()
    a, b = small_files(blobs, 2)
    junk = Delivery(b'{"schema": "something-else"}', "junk-1", 1, 0)
    outcomes = score_many(blobs, bus, endpoint, [deliver(a), junk, deliver(b)])
    assert outcomes == [ScoreOutcome.ACCEPTED, ScoreOutcome.UNREADABLE, ScoreOutcome.ACCEPTED]
    assert endpoint.batches() == [["f0.csv", "f1.csv"]]
    kept = json.loads(blobs.read("output", "errors/unreadable-messages/junk-1.message.json")[0])
    assert kept["error"]["code"] == "invalid_request" and kept["error"]["message"]
    assert kept["message"] == {"message_id": "junk-1", "body": {"text": '{"schema": "something-else"}'}}


def test_an_unreadable_binary_message_is_kept_as_base64_under_a_safe_name() -> None:
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), BatchEndpoint()
    junk = Delivery(b"\xff\x00 not json", "../odd id", 1, 0)
    assert score_many(blobs, bus, endpoint, [junk]) == [ScoreOutcome.UNREADABLE]
    kept = json.loads(blobs.read("output", "errors/unreadable-messages/.._odd_id.message.json")[0])
    assert base64.b64decode(kept["message"]["body"]["base64"]) == b"\xff\x00 not json"
    assert endpoint.batches() == [] and bus.sent == []


def test_batching_can_be_turned_off() -> None:
    settings = make_settings(SCORING_BATCH_MAX_FILES="1")
    blobs, endpoint = FakeBlobStore(), BatchEndpoint()
    requests = small_files(blobs, 2)
    outcomes = score_batch([deliver(r) for r in requests], route=settings.routes[0], settings=settings, blobs=blobs,
                           bus=FakeBus(), endpoint=endpoint, ledger=Ledger(blobs, "ledger"), now=NOW)  # fmt: skip
    assert outcomes == [ScoreOutcome.ACCEPTED] * 2 and endpoint.batches() == [["f0.csv"], ["f1.csv"]]


def test_a_batch_that_spent_its_time_budget_reschedules_the_rest_without_calling() -> None:
    """The runtime does not renew a batch's locks: after the budget the files left are retried later."""
    blobs, bus, endpoint = FakeBlobStore(), FakeBus(), BatchEndpoint()
    big = small_files(blobs, 3, size=500, prefix="big")  # each its own request
    ticks = iter([0.0, 1.0, BATCH_CALL_BUDGET_SECONDS + 1, BATCH_CALL_BUDGET_SECONDS + 2])
    outcomes = score_batch([deliver(r) for r in big], route=BATCH_SETTINGS.routes[0], settings=BATCH_SETTINGS,
                           blobs=blobs, bus=bus, endpoint=endpoint, ledger=Ledger(blobs, "ledger"), now=NOW,
                           monotonic=lambda: next(ticks))  # fmt: skip
    assert outcomes == [ScoreOutcome.ACCEPTED, ScoreOutcome.RESCHEDULED, ScoreOutcome.RESCHEDULED]
    assert endpoint.batches() == [["big0.csv"]]
    assert [s.message.message_id for s in bus.sent] == [f"{r.request_id}:1:retry1" for r in big[1:]]
