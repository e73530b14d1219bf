"""score use case with fakes: accepted, back-off by rescheduling, permanent rejection towards the DLQ."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from shared.contracts import AsyncScoringRequest, InferenceRequest, RequestState
from shared.ledger import Ledger
from shared.messages import PROP_SCORING_RETRY, request_message
from shared.ports import EndpointReply
from shared.score import DeadLetter, Delivery, ScoreOutcome, score_request
from shared.settings import Settings
from shared.submit import submit_blob

from .fakes import FakeBlobStore, FakeBus, FakeEndpoint, FixedClock, make_settings

SETTINGS = make_settings(SCORING_RETRY_BASE_SECONDS="4", SCORING_RETRY_MAX_SECONDS="60", SCORING_MAX_RETRIES="3")
NOW = FixedClock().now()


def submitted(blobs: FakeBlobStore, name: str = "a.csv", settings: Settings = SETTINGS) -> InferenceRequest:
    bus = FakeBus()
    blobs.put("input", name, b"a,b\n1,2\n", {"session_id": "s1"})
    submit_blob("input", name, settings=settings, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=NOW)
    return InferenceRequest.from_json(bus.sent[0].message.body)


def deliver(request: InferenceRequest, retry: int = 0) -> Delivery:
    return Delivery(body=request.to_json(), message_id=request.request_id, delivery_count=1, scoring_retry=retry)


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
def test_permanent_rejection_records_the_error_then_heads_for_the_dead_letter_queue(status: int, code: str) -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    request = submitted(blobs)
    endpoint = FakeEndpoint([EndpointReply(status, "nope")])
    with pytest.raises(DeadLetter, match=str(status)):
        score(blobs, bus, endpoint, deliver(request))
    document = json.loads(blobs.read("output", "errors/a.csv.error.json")[0])
    assert document["error"]["code"] == code and document["request_id"] == request.request_id
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.FAILED and record.dead_letter_reason
    # Redeliveries raise at once without calling the endpoint again.
    with pytest.raises(DeadLetter):
        score(blobs, bus, endpoint, deliver(request))
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
    with pytest.raises(DeadLetter):
        score(blobs, FakeBus(), FakeEndpoint([EndpointReply(400, json.dumps(body))]), deliver(request))
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and (record.error_code, record.error_message) == ("blob_forbidden", "SAS refused")


def test_stale_duplicate_and_finished_requests_are_skipped_without_posting() -> None:
    blobs, endpoint = FakeBlobStore(), FakeEndpoint()
    request = submitted(blobs)
    score(blobs, FakeBus(), endpoint, deliver(request))
    assert score(blobs, FakeBus(), endpoint, deliver(request)) == ScoreOutcome.SKIPPED  # already accepted
    newer = InferenceRequest.from_json(json.loads(json.dumps({**json.loads(request.to_json()), "attempt": 2})))
    assert score(blobs, FakeBus(), endpoint, deliver(newer)) == ScoreOutcome.ACCEPTED
    assert score(blobs, FakeBus(), endpoint, deliver(request)) == ScoreOutcome.SKIPPED  # attempt 1 is stale now
    assert len(endpoint.bodies) == 2
    assert AsyncScoringRequest.from_json(endpoint.bodies[1]).attempt == 2


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
