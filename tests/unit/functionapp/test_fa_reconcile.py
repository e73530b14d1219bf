"""reconcile use case with fakes: overdue requests are resubmitted, then failed with result_timeout."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.contracts import InferenceRequest, RequestState
from shared.ledger import Ledger, accepted
from shared.reconcile import reconcile
from shared.submit import submit_blob

from .fakes import FakeBlobStore, FakeBus, FixedClock, make_settings

SETTINGS = make_settings(RESULT_DEADLINE_MINUTES="30", MAX_RESUBMITS="2")
T0 = FixedClock().now()


def accepted_request(blobs: FakeBlobStore) -> InferenceRequest:
    bus = FakeBus()
    blobs.put("input", "a.csv", b"1", {"session_id": "s"})
    submit_blob("input", "a.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=T0)
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    ledger = Ledger(blobs, "ledger")
    ledger.mark_inflight(request.request_id, T0, 1)
    ledger.update(request.request_id, accepted(request, T0, 0))
    return request


def test_nothing_happens_before_the_deadline() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    accepted_request(blobs)
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"),
                       now=T0 + timedelta(minutes=29))  # fmt: skip
    assert (report.resubmitted, report.timed_out, bus.sent) == ([], [], [])


def test_overdue_requests_are_resubmitted_then_failed_with_result_timeout() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    request = accepted_request(blobs)
    ledger = Ledger(blobs, "ledger")
    now = T0
    for attempt in (2, 3):
        now += timedelta(minutes=31)
        report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=now)
        assert report.resubmitted == [request.request_id]
        again = InferenceRequest.from_json(bus.sent[-1].message.body)
        assert again.attempt == attempt and again.request_id == request.request_id
        assert bus.sent[-1].message.message_id == f"{request.request_id}:{attempt}"
        assert bus.sent[-1].message.session_id == "s"
        record = ledger.get(request.request_id)
        assert record is not None and (record.state, record.attempt) == (RequestState.SUBMITTED, attempt)
    now += timedelta(minutes=31)
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=now)
    assert report.timed_out == [request.request_id] and len(bus.sent) == 2
    record = ledger.get(request.request_id)
    assert record is not None and record.state == RequestState.FAILED and record.error_code == "result_timeout"
    assert json.loads(blobs.read("output", "errors/a.csv.error.json")[0])["error"]["code"] == "result_timeout"
    assert list(ledger.inflight()) == []


def test_markers_of_finished_requests_are_cleaned() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    request = accepted_request(blobs)
    ledger = Ledger(blobs, "ledger")
    from shared.ledger import LedgerRecord, succeeded

    ledger.update(request.request_id, succeeded(LedgerRecord.for_request(request, RequestState.ACCEPTED, T0), T0,
                                                "output/a.csv", 1, 0, "2026-01-01T00:00:00Z"))  # fmt: skip
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0 + timedelta(hours=2))
    assert report.cleaned == [request.request_id] and bus.sent == [] and list(ledger.inflight()) == []


def test_a_request_never_accepted_is_resubmitted_too() -> None:
    """E.g. its request message was dead-lettered by an unexpected error before the endpoint accepted it."""
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "stuck.csv", b"1")
    submit_blob("input", "stuck.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=T0)
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    assert [m[0] for m in Ledger(blobs, "ledger").inflight()] == [request.request_id]
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"),
                       now=T0 + timedelta(minutes=31))  # fmt: skip
    assert report.resubmitted == [request.request_id]
    assert InferenceRequest.from_json(bus.sent[-1].message.body).attempt == 2
