"""Ledger transitions: monotonic states, late results, attempts, and the in-flight listing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.contracts import DataFormat, InferenceRequest, RequestState
from shared.ledger import Ledger, LedgerRecord, accepted, failed, reopened, submitted, succeeded

from .fakes import FakeBlobStore, FixedClock

NOW = FixedClock().now()
REQUEST = InferenceRequest(request_id="a" * 32, container="input", blob_name="a.csv", blob_url="u", etag="e", size=1,
                           format=DataFormat.CSV, compression=None, session_id="s", model="default",
                           submitted_at="t")  # fmt: skip
BASE = LedgerRecord.for_request(REQUEST, NOW)


def test_late_accepted_does_not_undo_a_result() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    ledger.advance(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"), now=NOW)
    ledger.advance(REQUEST.request_id, accepted(REQUEST, NOW, 0), now=NOW)
    ledger.advance(REQUEST.request_id, failed(BASE, NOW, code="x", message="m", error_location="e"), now=NOW)
    record = ledger.get(REQUEST.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED and record.error_code is None


def test_resubmission_raises_the_attempt_and_stale_attempts_are_ignored() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    ledger.advance(REQUEST.request_id, submitted(replace(REQUEST, attempt=2), NOW), now=NOW)
    ledger.advance(REQUEST.request_id, accepted(REQUEST, NOW, 0), now=NOW)  # attempt 1 arrives late
    record = ledger.get(REQUEST.request_id)
    assert record is not None and (record.state, record.attempt) == (RequestState.SUBMITTED, 2)


def test_record_round_trips_and_public_view_hides_counters() -> None:
    record = replace(BASE, scoring_retries=3)
    assert LedgerRecord.from_json(record.to_json()) == record
    view = record.public_view()
    assert view["state"] == "submitted" and "scoring_retries" not in view


def test_the_marker_is_written_when_a_watch_starts_and_a_finished_request_keeps_it() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    later = NOW + timedelta(minutes=5)
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    assert [(m.request_id, m.since, m.attempt) for m in ledger.inflight()] == [(REQUEST.request_id, NOW, 1)]
    marker_etag = blobs.blobs[("ledger", f"inflight/{REQUEST.request_id}")].etag
    ledger.advance(REQUEST.request_id, accepted(REQUEST, later, 0), now=later)  # same attempt: record only
    assert blobs.blobs[("ledger", f"inflight/{REQUEST.request_id}")].etag == marker_etag
    ledger.advance(REQUEST.request_id, accepted(replace(REQUEST, attempt=2), later, 0), now=later)  # new attempt
    assert [(m.since, m.attempt) for m in ledger.inflight()] == [(later, 2)]
    ledger.advance(REQUEST.request_id, succeeded(BASE, later, "output/a.csv", 3, 0, "c"), now=later)
    assert [m.request_id for m in ledger.inflight()] == [REQUEST.request_id]
    etags = {key: blob.etag for key, blob in blobs.blobs.items()}
    ledger.advance(REQUEST.request_id, accepted(REQUEST, later, 0), now=later)  # no change: nothing written
    assert {key: blob.etag for key, blob in blobs.blobs.items()} == etags


def test_a_change_to_a_finished_record_writes_the_marker_again() -> None:
    """A late success replacing a failure must be checked by reconcile even if the failure's marker was released."""
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    ledger.advance(REQUEST.request_id, failed(BASE, NOW, code="x", message="m", error_location="e"), now=NOW)
    [marker] = ledger.inflight()
    assert ledger.release(marker) and list(ledger.inflight()) == []
    ledger.advance(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"), now=NOW)
    assert [m.request_id for m in ledger.inflight()] == [REQUEST.request_id]


def test_a_state_change_costs_one_write_when_the_record_is_known() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW, known=(None, None))
    assert blobs.ops == {"write": 2}  # marker, record
    known = ledger.read(REQUEST.request_id)
    blobs.ops.clear()
    ledger.advance(REQUEST.request_id, accepted(REQUEST, NOW, 0), now=NOW, known=known)
    assert blobs.ops == {"write": 1}


def test_inflight_listing_skips_bad_markers_and_release_is_conditional() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    blobs.put("ledger", "inflight/r2", b"", {"since": "yesterday", "attempt": "1"})
    [marker] = ledger.inflight()
    ledger.advance(REQUEST.request_id, submitted(replace(REQUEST, attempt=2), NOW), now=NOW)  # rewrites the marker
    assert not ledger.release(marker)
    [marker] = ledger.inflight()
    assert ledger.release(marker) and not ledger.release(marker)
    assert list(ledger.inflight()) == []


def test_reopened_moves_only_a_success_of_an_earlier_attempt_back_to_submitted() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    assert ledger.advance(REQUEST.request_id, reopened(2, NOW), now=NOW) == ledger.get(REQUEST.request_id)
    ledger.advance(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"), now=NOW)
    record = ledger.advance(REQUEST.request_id, reopened(2, NOW), now=NOW)
    assert record is not None and (record.state, record.attempt, record.output_location) == ("submitted", 2, None)


def test_an_update_from_a_stale_read_is_retried_on_the_current_record() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    stale = ledger.read(REQUEST.request_id)
    ledger.advance(REQUEST.request_id, accepted(REQUEST, NOW, 2), now=NOW)  # lands between the read and the update
    ledger.advance(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"), known=stale, now=NOW)
    record = ledger.get(REQUEST.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED and record.scoring_retries == 2


def test_an_expected_new_record_that_exists_is_read_not_overwritten() -> None:
    ledger = Ledger(FakeBlobStore(), "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    ledger.advance(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"), now=NOW)
    record = ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), known=(None, None), now=NOW)
    assert record is not None and record.state == RequestState.SUCCEEDED
