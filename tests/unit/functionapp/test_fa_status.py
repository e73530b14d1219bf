"""The status page's data (shared.status.collect) and its HTML, from a ledger in a fake blob store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from shared.contracts import RequestState, iso
from shared.ledger import RECORDS, Ledger, LedgerRecord
from shared.status import EndpointHealth, Snapshot, collect
from shared.status_page import render
from shared.telemetry.metrics import SubscriptionDepth

from .fakes import FakeBlobStore

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


class Depths:
    def __init__(self, fail: bool = False, writer_active: int = 3) -> None:
        self.fail = fail
        self.writer_active = writer_active

    def depths(self) -> list[SubscriptionDepth]:
        if self.fail:
            raise ConnectionError("management endpoint refused the connection")
        return [
            SubscriptionDepth("inference-requests", "scoring", active=2, dead_lettered=1),
            SubscriptionDepth("inference-results", "writer", active=self.writer_active, dead_lettered=0),
        ]


class Probe:
    def probe(self, model: str) -> EndpointHealth:
        return EndpointHealth(model=model, healthy=model == "churn", detail="answering", http_status=405)


def put(blobs: FakeBlobStore, n: int, state: RequestState, minutes_ago: float, **extra: object) -> LedgerRecord:
    done = NOW - timedelta(minutes=minutes_ago)
    record = LedgerRecord(
        request_id=f"{n:032x}",
        state=state,
        input_container="input",
        input_name=f"d/file-{n}.csv",
        model="churn",
        submitted_at=iso(done - timedelta(seconds=2)),
        accepted_at=iso(done - timedelta(seconds=1)) if state != RequestState.SUBMITTED else None,
        completed_at=iso(done - timedelta(milliseconds=100)) if state in (RequestState.SUCCEEDED,) else None,
        updated_at=iso(done),
        **extra,  # type: ignore[arg-type]
    )
    blobs.write(
        "ledger",
        f"{RECORDS}{record.request_id}.json",
        record.to_json(),
        content_type="application/json",
        metadata=record.listing_metadata(),
    )
    return record


def snapshot(blobs: FakeBlobStore, depths: Depths | None = None) -> Snapshot:
    return collect(
        blobs=blobs,
        ledger=Ledger(blobs, "ledger"),
        ledger_container="ledger",
        depths=depths or Depths(),
        probe=Probe(),
        models=("churn", "churn-v2"),
        writer_subscription="writer",
        now=NOW,
    )


def test_counts_timelines_minutes_and_errors() -> None:
    blobs = FakeBlobStore()
    for n in range(1, 6):
        put(blobs, n, RequestState.SUCCEEDED, minutes_ago=n, rows_scored=10)
    put(blobs, 6, RequestState.FAILED, minutes_ago=0.5, error_code="missing_columns")
    put(blobs, 7, RequestState.FAILED, minutes_ago=90, error_code="missing_columns")  # outside the hour
    put(blobs, 8, RequestState.SUBMITTED, minutes_ago=0.1)
    put(blobs, 9, RequestState.ACCEPTED, minutes_ago=0.2)
    snap = snapshot(blobs)

    assert snap.totals == {"accepted": 1, "failed": 2, "submitted": 1, "succeeded": 5}
    assert snap.in_flight == {
        "submitted, not scored yet (small files: until written)": 1,
        "accepted, being scored (larger files)": 1,
        "scored, waiting to be written": 3,  # the writer subscription's active messages
    }
    recent = snap.recent
    assert [t.request_id for t in recent[:3]] == [f"{n:032x}" for n in (8, 9, 6)]
    first_success = next(t for t in recent if t.state == "succeeded")
    assert first_success.times["submitted"] < first_success.times["accepted"] < first_success.times["scored"]
    assert first_success.times["scored"] < first_success.times["written"]
    assert recent[0].times["written"] is None and recent[0].times["scored"] is None
    minutes = snap.minutes
    assert len(minutes) == 60 and sum(m.files for m in minutes) == 6 and sum(m.failed for m in minutes) == 1
    assert all(m.p50_seconds == 2.0 for m in minutes if m.files)
    [group] = snap.errors
    assert (group.code, group.count) == ("missing_columns", 2)
    assert group.latest[0] == (f"{6:032x}", "d/file-6.csv")
    assert snap.flowing


def test_service_bus_failure_is_shown_not_raised() -> None:
    blobs = FakeBlobStore()
    snap = snapshot(blobs, Depths(fail=True))
    assert snap.subscriptions == []
    assert "refused" in snap.subscriptions_error
    assert "refused" in render(snap)


def test_page_is_self_contained_and_links_carry_the_key() -> None:
    blobs = FakeBlobStore()
    put(blobs, 1, RequestState.FAILED, minutes_ago=0.2, error_code="no_valid_rows")
    put(blobs, 2, RequestState.SUCCEEDED, minutes_ago=30)
    html = render(snapshot(blobs), "?code=k%26y")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no CDN, fonts or other hosts
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert f'href="status/errors/{1:032x}?code=k%26y"' in html
    assert '<meta http-equiv="refresh" content="3">' in html
    assert 'data-model="churn" data-healthy="true"' in html and 'data-model="churn-v2" data-healthy="false"' in html
    assert 'data-subscription="inference-requests/scoring"' in html and 'data-dead-lettered="1"' in html
    assert "<svg" in html and html.count("<rect") >= 60


def test_idle_page_refreshes_slowly() -> None:
    blobs = FakeBlobStore()
    put(blobs, 2, RequestState.SUCCEEDED, minutes_ago=30)
    html = render(snapshot(blobs, Depths(writer_active=0)))
    assert '<meta http-equiv="refresh" content="15">' in html
