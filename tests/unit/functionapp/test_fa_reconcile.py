"""reconcile use case with fakes: overdue requests are resubmitted, then failed with result_timeout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from shared.contracts import (
    DataFormat,
    ErrorInfo,
    InferenceRequest,
    InferenceResult,
    OutputRef,
    RequestState,
    ResultStatus,
)
from shared.ledger import Ledger, accepted, reopened
from shared.listing import LIST_PAGE
from shared.ports import BlobInfo
from shared.reconcile import reconcile
from shared.submit import submit_blob
from shared.wiring import services
from shared.write import write_result

from .fakes import FakeBlobStore, FakeBus, FixedClock, make_settings

SETTINGS = make_settings(RESULT_DEADLINE_MINUTES="30", MAX_RESUBMITS="2")
T0 = FixedClock().now()


def accepted_request(blobs: FakeBlobStore, ledger: Ledger | None = None, name: str = "a.csv") -> InferenceRequest:
    bus, ledger = FakeBus(), ledger or Ledger(blobs, "ledger")
    blobs.put("input", name, b"1", {"session_id": "s"})
    submit_blob("input", name, settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0)
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    ledger.advance(request.request_id, accepted(request, T0, 0), now=T0)
    return request


def test_nothing_happens_before_the_deadline() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    accepted_request(blobs)
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"),
                       now=T0 + timedelta(minutes=29))  # fmt: skip
    assert (report.resubmitted, report.timed_out, bus.sent) == ([], [], [])


def test_a_request_accepted_late_gets_its_full_deadline_from_acceptance() -> None:
    """The marker keeps the time its attempt began; the record's last change decides whether it is overdue."""
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "a.csv", b"1", {"session_id": "s"})
    ledger = Ledger(blobs, "ledger")
    submit_blob("input", "a.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0)
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    ledger.advance(request.request_id, accepted(request, T0 + timedelta(minutes=20), 0), now=T0 + timedelta(minutes=20))
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0 + timedelta(minutes=45))
    assert (report.resubmitted, len(bus.sent)) == ([], 1)
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0 + timedelta(minutes=51))
    assert report.resubmitted == [request.request_id]


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
    assert [m.request_id for m in ledger.inflight()] == [request.request_id]  # until the record is checked
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=now + timedelta(minutes=31))
    assert report.cleaned == [request.request_id] and list(ledger.inflight()) == []


def finish(blobs: FakeBlobStore, request: InferenceRequest, *, output: bool, ledger: Ledger | None = None) -> None:
    write_result(
        InferenceResult(
            request_id=request.request_id,
            status=ResultStatus.SUCCEEDED if output else ResultStatus.FAILED,
            input_name=request.blob_name,
            model=request.model,
            output=OutputRef.inline(b"a,prediction\n1,0\n", DataFormat.CSV, None) if output else None,
            error=None if output else ErrorInfo(code="malformed_data", message="bad"),
        ).to_json(),
        settings=SETTINGS,
        blobs=blobs,
        ledger=ledger or Ledger(blobs, "ledger"),
        now=T0,
    )


def test_markers_of_finished_requests_are_released_once_their_output_is_there() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    request = accepted_request(blobs)
    ledger = Ledger(blobs, "ledger")
    finish(blobs, request, output=True)
    assert [m.request_id for m in ledger.inflight()] == [request.request_id]
    blobs.ops.clear()
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0 + timedelta(hours=2))
    assert report.cleaned == [request.request_id] and bus.sent == []
    # What checking one finished file costs: its output's properties, which the listing names, and clearing the
    # mark (the two listings, of the records and of the earlier layout's markers, serve every file of the pass).
    assert +blobs.ops == {"list": 2, "properties": 1, "set_metadata": 1}
    assert list(ledger.inflight()) == []


def test_where_storage_keeps_acknowledged_writes_a_success_costs_reconcile_nothing_later() -> None:
    """RECONCILE_CHECK_OUTPUTS=false (Azure Storage): the writer records a success only once its output is there,
    so the record is written without the mark and reconcile's pass only lists; a failure and an unfinished request
    keep their marks and are handled as before."""
    settings = make_settings(RESULT_DEADLINE_MINUTES="30", RECONCILE_CHECK_OUTPUTS="false")
    blobs, bus = FakeBlobStore(), FakeBus()
    ledger = services(settings=settings, blobs=blobs, bus=bus).ledger
    done = accepted_request(blobs, ledger)
    writes = blobs.ops["write"]
    finish(blobs, done, output=True, ledger=ledger)
    assert blobs.ops["write"] - writes == 2  # the output and the record, as with the check
    assert list(ledger.inflight()) == []
    blobs.ops.clear()
    later = T0 + timedelta(hours=2)
    report = reconcile(settings=settings, blobs=blobs, bus=bus, ledger=ledger, now=later)
    assert (report.cleaned, bus.sent, +blobs.ops) == ([], [], {"list": 2})
    bad, unfinished = accepted_request(blobs, ledger, "b.csv"), accepted_request(blobs, ledger, "c.csv")
    finish(blobs, bad, output=False, ledger=ledger)
    report = reconcile(settings=settings, blobs=blobs, bus=bus, ledger=ledger, now=later)
    assert (report.cleaned, report.resubmitted) == ([bad.request_id], [unfinished.request_id])
    record = ledger.get(done.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED and blobs.names("output")[0] == "a.csv"


def finished_in_one_folder(blobs: FakeBlobStore, count: int) -> tuple[Ledger, list[InferenceRequest]]:
    ledger = Ledger(blobs, "ledger")
    requests = [accepted_request(blobs, ledger, f"day/{i:03d}.csv") for i in range(count)]
    for request in requests:
        finish(blobs, request, output=True, ledger=ledger)
    return ledger, requests


def test_the_outputs_of_a_folder_are_checked_with_one_listing() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    ledger, requests = finished_in_one_folder(blobs, 3)
    blobs.ops.clear()
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0 + timedelta(hours=2))
    # The ledger's two listings and one of the folder "day/" in the output container, then each mark cleared.
    assert +blobs.ops == {"list": 3, "set_metadata": 3}
    assert sorted(report.cleaned) == sorted(r.request_id for r in requests) and list(ledger.inflight()) == []


def test_an_output_gone_from_a_listed_folder_is_still_resubmitted() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    ledger, (kept, lost) = finished_in_one_folder(blobs, 2)
    blobs.delete("output", "day/001.csv")
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0 + timedelta(hours=2))
    assert (report.cleaned, report.reopened) == ([kept.request_id], [lost.request_id])
    assert InferenceRequest.from_json(bus.sent[-1].message.body).attempt == 2


class ListingCountingStore(FakeBlobStore):
    """Counts the blobs its listings hand out (a real listing's pages hold 5,000 each)."""

    def __init__(self) -> None:
        super().__init__()
        self.listed = 0

    def list(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        for info in super().list(container, prefix):
            self.listed += container == "output"
            yield info


def test_a_folder_listing_stops_before_it_costs_more_than_the_reads_it_saves() -> None:
    """Two outputs due in a folder of 12,000 blobs listed before them: two pages at most, then a read each."""
    blobs, bus = ListingCountingStore(), FakeBus()
    for i in range(12_000):
        blobs.put("output", f"day/0-{i:05d}.csv", b"")
    ledger, requests = finished_in_one_folder(blobs, 2)
    blobs.ops.clear()
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=T0 + timedelta(hours=2))
    assert sorted(report.cleaned) == sorted(r.request_id for r in requests)
    assert blobs.listed == 2 * LIST_PAGE and blobs.ops["properties"] == 2


def test_a_listed_output_of_any_name_is_found_and_a_name_too_long_to_list_is_read() -> None:
    for name, reads in (("dir/ä b%20,c.csv", 0), ("d/" + "é" * 400 + ".csv", 1)):
        blobs, bus = FakeBlobStore(), FakeBus()
        blobs.put("input", name, b"1", {"session_id": "s"})
        submit_blob("input", name, settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=T0)
        request = InferenceRequest.from_json(bus.sent[0].message.body)
        finish(blobs, request, output=True)
        assert all(value.isascii() for blob in blobs.blobs.values() for value in blob.metadata.values())
        blobs.ops.clear()
        report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"),
                           now=T0 + timedelta(hours=2))  # fmt: skip
        assert report.cleaned == [request.request_id] and blobs.ops["read"] == reads, name


class ChangingStore(FakeBlobStore):
    """Changes the ledger record the moment reconcile asks for the output: another writer lands in between."""

    def __init__(self) -> None:
        super().__init__()
        self.change: Callable[[], None] | None = None

    def properties(self, container: str, name: str) -> BlobInfo:
        if container == "output" and self.change is not None:
            change, self.change = self.change, None
            change()
        return super().properties(container, name)


def test_a_record_changed_after_the_listing_keeps_its_mark() -> None:
    blobs, bus = ChangingStore(), FakeBus()
    request = accepted_request(blobs)
    finish(blobs, request, output=True)
    ledger = Ledger(blobs, "ledger")
    later = T0 + timedelta(hours=2)
    blobs.change = lambda: ledger.advance(request.request_id, reopened(2, later), now=later)
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=later)
    assert report.cleaned == []
    marked = list(ledger.inflight())
    assert [(m.request_id, m.attempt, m.listed_output) for m in marked] == [(request.request_id, 2, None)]


def finished_then_lost(output: bool) -> tuple[FakeBlobStore, FakeBus, InferenceRequest, Ledger, datetime]:
    """A request that finished, whose output (or error record) storage then lost, and a time past the deadline."""
    blobs, bus = FakeBlobStore(), FakeBus()
    request = accepted_request(blobs)
    finish(blobs, request, output=output)
    blobs.delete("output", "a.csv" if output else "errors/a.csv.error.json")
    return blobs, bus, request, Ledger(blobs, "ledger"), T0 + timedelta(minutes=31)


def test_a_success_whose_output_is_gone_is_resubmitted() -> None:
    """Storage lost the output but kept the record saying "succeeded": the record is not taken on trust."""
    blobs, bus, request, ledger, now = finished_then_lost(output=True)
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=now)
    assert report.reopened == [request.request_id] and report.cleaned == []
    again = InferenceRequest.from_json(bus.sent[-1].message.body)
    assert again.attempt == 2 and bus.sent[-1].message.message_id == f"{request.request_id}:2"
    record = ledger.get(request.request_id)
    assert record is not None and (record.state, record.attempt, record.output_location) == ("submitted", 2, None)
    assert [m.attempt for m in ledger.inflight()] == [2]
    finish(blobs, again, output=True)
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=now + timedelta(minutes=31))
    assert report.cleaned == [request.request_id] and blobs.names("output") == ["a.csv"]


def test_a_failure_whose_error_record_is_gone_gets_it_again() -> None:
    blobs, bus, request, ledger, now = finished_then_lost(output=False)
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=now)
    assert report.error_rewritten == [request.request_id] and bus.sent == []
    assert json.loads(blobs.read("output", "errors/a.csv.error.json")[0])["error"]["code"] == "malformed_data"
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=now)
    assert report.cleaned == [request.request_id] and list(ledger.inflight()) == []


def test_a_request_never_accepted_is_resubmitted_too() -> None:
    """E.g. its request message was dead-lettered by an unexpected error before the endpoint accepted it."""
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "stuck.csv", b"1")
    submit_blob("input", "stuck.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=T0)
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    assert [m.request_id for m in Ledger(blobs, "ledger").inflight()] == [request.request_id]
    report = reconcile(settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"),
                       now=T0 + timedelta(minutes=31))  # fmt: skip
    assert report.resubmitted == [request.request_id]
    assert InferenceRequest.from_json(bus.sent[-1].message.body).attempt == 2
