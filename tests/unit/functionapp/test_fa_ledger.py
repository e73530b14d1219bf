"""Ledger transitions: monotonic states, late results, attempts, and the in-flight listing."""

from __future__ import annotations

from dataclasses import replace

from shared.contracts import DataFormat, InferenceRequest, RequestState
from shared.ledger import Ledger, LedgerRecord, accepted, failed, submitted, succeeded

from .fakes import FakeBlobStore, FixedClock

NOW = FixedClock().now()
REQUEST = InferenceRequest(request_id="a" * 32, container="input", blob_name="a.csv", blob_url="u", etag="e", size=1,
                           format=DataFormat.CSV, compression=None, session_id="s", model="churn",
                           submitted_at="t")  # fmt: skip
BASE = LedgerRecord.for_request(REQUEST, RequestState.SUBMITTED, NOW)


def test_late_accepted_does_not_undo_a_result() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.update(REQUEST.request_id, submitted(REQUEST, NOW))
    ledger.update(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"))
    ledger.update(REQUEST.request_id, accepted(REQUEST, NOW, 0))
    ledger.update(REQUEST.request_id, failed(BASE, NOW, code="x", message="m", error_location="e"))
    record = ledger.get(REQUEST.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED and record.error_code is None


def test_resubmission_raises_the_attempt_and_stale_attempts_are_ignored() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.update(REQUEST.request_id, submitted(REQUEST, NOW))
    ledger.update(REQUEST.request_id, submitted(replace(REQUEST, attempt=2), NOW))
    ledger.update(REQUEST.request_id, accepted(REQUEST, NOW, 0))  # attempt 1 arrives late
    record = ledger.get(REQUEST.request_id)
    assert record is not None and (record.state, record.attempt) == (RequestState.SUBMITTED, 2)


def test_record_round_trips_and_public_view_hides_counters() -> None:
    record = replace(BASE, scoring_retries=3)
    assert LedgerRecord.from_json(record.to_json()) == record
    view = record.public_view()
    assert view["state"] == "submitted" and "scoring_retries" not in view


def test_inflight_listing_skips_bad_markers() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    ledger.mark_inflight("r1", NOW, 2)
    blobs.put("ledger", "inflight/r2", b"", {"since": "yesterday", "attempt": "1"})
    assert list(ledger.inflight()) == [("r1", NOW, 2)]
    ledger.clear_inflight("r1")
    ledger.clear_inflight("r1")
    assert list(ledger.inflight()) == []


def test_an_update_from_a_stale_read_is_retried_on_the_current_record() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.update(REQUEST.request_id, submitted(REQUEST, NOW))
    stale = ledger.read(REQUEST.request_id)
    ledger.update(REQUEST.request_id, accepted(REQUEST, NOW, 2))  # lands between the read and the update
    ledger.update(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"), known=stale)
    record = ledger.get(REQUEST.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED and record.scoring_retries == 2


def test_an_expected_new_record_that_exists_is_read_not_overwritten() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.update(REQUEST.request_id, submitted(REQUEST, NOW))
    ledger.update(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"))
    record = ledger.update(REQUEST.request_id, submitted(REQUEST, NOW), known=(None, None))
    assert record is not None and record.state == RequestState.SUCCEEDED
