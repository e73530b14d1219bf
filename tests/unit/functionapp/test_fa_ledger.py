"""Ledger transitions: monotonic states, late results, attempts, and the in-flight listing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from shared.contracts import DataFormat, InferenceRequest, RequestState
from shared.ledger import Ledger, LedgerRecord, accepted, failed, reopened, submitted, succeeded
from shared.ports import BlobNotFound

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


def test_every_state_change_marks_the_record_in_flight_and_a_finished_request_keeps_the_mark() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    later = NOW + timedelta(minutes=5)
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    assert [(m.request_id, m.since, m.attempt) for m in ledger.inflight()] == [(REQUEST.request_id, NOW, 1)]
    ledger.advance(REQUEST.request_id, accepted(replace(REQUEST, attempt=2), later, 0), now=later)
    assert [(m.since, m.attempt) for m in ledger.inflight()] == [(later, 2)]
    ledger.advance(REQUEST.request_id, succeeded(BASE, later, "output/a.csv", 3, 0, "c"), now=later)
    assert [m.request_id for m in ledger.inflight()] == [REQUEST.request_id]
    assert blobs.names("ledger") == [f"requests/{REQUEST.request_id}.json"]  # the mark is on the record itself
    etags = {key: blob.etag for key, blob in blobs.blobs.items()}
    ledger.advance(REQUEST.request_id, accepted(REQUEST, later, 0), now=later)  # no change: nothing written
    assert {key: blob.etag for key, blob in blobs.blobs.items()} == etags


def test_a_change_to_a_released_record_marks_it_again() -> None:
    """A late success replacing a checked failure must be checked by reconcile too."""
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    ledger.advance(REQUEST.request_id, failed(BASE, NOW, code="x", message="m", error_location="e"), now=NOW)
    [marker] = ledger.inflight()
    assert ledger.release(marker) and list(ledger.inflight()) == []
    record = ledger.get(REQUEST.request_id)
    assert record is not None and record.state == RequestState.FAILED  # releasing leaves the record as it was
    ledger.advance(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"), now=NOW)
    assert [m.request_id for m in ledger.inflight()] == [REQUEST.request_id]


def test_a_state_change_costs_one_write_and_a_new_request_one_in_all() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW, known=(None, None))
    assert blobs.ops == {"write": 1}
    known = ledger.read(REQUEST.request_id)
    blobs.ops.clear()
    ledger.advance(REQUEST.request_id, accepted(REQUEST, NOW, 0), now=NOW, known=known)
    assert blobs.ops == {"write": 1}


def test_inflight_listing_skips_bad_marks_and_release_is_conditional() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    blobs.put("ledger", "requests/r2.json", b"{}", {"inflight": "true", "updated_at": "yesterday", "attempt": "1"})
    [marker] = ledger.inflight()
    ledger.advance(REQUEST.request_id, accepted(REQUEST, NOW, 0), now=NOW)  # the record changed since the listing
    assert not ledger.release(marker)
    [marker] = ledger.inflight()
    assert ledger.release(marker) and not ledger.release(marker)
    assert list(ledger.inflight()) == []


def test_markers_of_the_earlier_layout_are_listed_and_released() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    blobs.put("ledger", "inflight/old", b"", {"since": "2026-01-02T03:04:05Z", "attempt": "2"})
    [marker] = ledger.inflight()
    assert (marker.request_id, marker.attempt) == ("old", 2)
    assert ledger.release(marker) and blobs.names("ledger") == []
    blobs.put("ledger", "inflight/" + REQUEST.request_id, b"", {"since": "2026-01-02T03:04:05Z", "attempt": "1"})
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    assert [m.blob for m in ledger.inflight()] == [f"requests/{REQUEST.request_id}.json"]  # one mark per request
    assert blobs.names("ledger") == [f"requests/{REQUEST.request_id}.json"]


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


def test_advance_tagged_says_the_etag_of_what_it_stored_and_whether_it_wrote() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    request = replace(REQUEST, submitted_at="2026-01-02T03:04:05.000Z")
    created = ledger.advance_tagged(request.request_id, submitted(request, NOW), known=(None, None), now=NOW)
    assert created.written and created.etag == blobs.read("ledger", f"requests/{request.request_id}.json")[1]
    assert created.record == LedgerRecord.created_for(request, created.record and created.record.traceparent)
    again = ledger.advance_tagged(request.request_id, submitted(request, NOW), known=(None, None), now=NOW)
    assert not again.written and again.etag == created.etag and again.record == created.record


def test_a_record_known_by_its_etag_is_written_without_a_read_and_a_stale_one_is_read() -> None:
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger")
    request = replace(REQUEST, submitted_at="2026-01-02T03:04:05.000Z")
    created = ledger.advance_tagged(request.request_id, submitted(request, NOW), known=(None, None), now=NOW)
    known = (LedgerRecord.created_for(request, None), created.etag)
    blobs.ops.clear()
    ledger.advance(request.request_id, accepted(request, NOW, 0), known=known, now=NOW)
    assert +blobs.ops == {"write": 1}
    blobs.ops.clear()  # the same ETag again: the record moved on, so the write fails its condition and reads
    record = ledger.advance(request.request_id, failed(BASE, NOW, code="x", message="y", error_location=None),
                            known=known, now=NOW)  # fmt: skip
    assert +blobs.ops == {"write": 2, "read": 1}
    assert record is not None and record.state == RequestState.FAILED and record.accepted_at is not None


class NotFoundOnIfMatch(FakeBlobStore):
    """Answers a write against the ETag of a blob that is gone with 404, as a service may."""

    def write(self, container: str, name: str, data: bytes, **kwargs: Any) -> str:
        if kwargs.get("if_match") is not None and (container, name) not in self.blobs:
            raise BlobNotFound(name)
        return super().write(container, name, data, **kwargs)


def test_a_known_record_that_is_gone_is_read_again_whether_storage_answers_412_or_404() -> None:
    for blobs in (FakeBlobStore(), NotFoundOnIfMatch()):
        ledger = Ledger(blobs, "ledger")
        request = replace(REQUEST, submitted_at="2026-01-02T03:04:05.000Z")
        created = ledger.advance_tagged(request.request_id, submitted(request, NOW), known=(None, None), now=NOW)
        known = (created.record, created.etag)
        blobs.delete("ledger", f"requests/{request.request_id}.json")
        record = ledger.advance(request.request_id, accepted(request, NOW, 0), known=known, now=NOW)
        assert record is not None and record.state == RequestState.ACCEPTED
        assert ledger.get(request.request_id) == record


def test_without_the_success_check_only_a_success_is_written_unmarked() -> None:
    """``check_successes=False`` (RECONCILE_CHECK_OUTPUTS=false): a success leaves the listing of marked records in the
    same one write; every other state keeps it (a reopened success too)."""
    blobs = FakeBlobStore()
    ledger = Ledger(blobs, "ledger", check_successes=False)
    ledger.advance(REQUEST.request_id, submitted(REQUEST, NOW), now=NOW)
    ledger.advance(REQUEST.request_id, failed(BASE, NOW, code="x", message="m", error_location="e"), now=NOW)
    assert [m.request_id for m in ledger.inflight()] == [REQUEST.request_id]
    writes = blobs.ops["write"]
    ledger.advance(REQUEST.request_id, succeeded(BASE, NOW, "output/a.csv", 3, 0, "c"), now=NOW)
    assert blobs.ops["write"] == writes + 1 and list(ledger.inflight()) == []
    [blob] = blobs.blobs.values()
    assert (blob.metadata["state"], blob.metadata["output"]) == ("succeeded", "output/a.csv")  # still listed
    ledger.advance(REQUEST.request_id, reopened(2, NOW), now=NOW)
    assert [m.attempt for m in ledger.inflight()] == [2]
