"""Results of one batch: independent files written at once, one file's results in order, outcomes kept apart;
what a small file's submission and result cost in storage requests; and the ``write_result`` trigger, called
as the decorated function with `azure.functions` messages and fakes of the ports."""

from __future__ import annotations

import threading
from typing import Any

import azure.functions as func
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import shared.triggers.write_result as write_trigger
from shared.concurrency import run_concurrently
from shared.contracts import DataFormat, InferenceRequest, InferenceResult, OutputRef, ResultStatus
from shared.ledger import Ledger
from shared.submit import submit_blob
from shared.telemetry import pipeline
from shared.wiring import services
from shared.write import WRITE_THREADS, WriteOutcome, output_key, write_result

from .fakes import FakeBlobStore, FakeBus, FixedClock, make_settings

SETTINGS = make_settings()
NOW = FixedClock().now()


def test_different_files_are_written_at_once() -> None:
    both_running = threading.Barrier(2, timeout=10)  # broken (raises) unless the two writes overlap

    def write_one(item: str) -> WriteOutcome:
        both_running.wait()
        return WriteOutcome.WRITTEN

    assert (
        run_concurrently(["a", "b"], write_one, key=lambda item: item, threads=WRITE_THREADS)
        == [WriteOutcome.WRITTEN] * 2
    )


def test_results_for_one_file_are_written_in_order_and_failures_stay_with_their_result() -> None:
    order: list[str] = []
    threads: dict[str, int] = {}

    def write_one(item: tuple[str, str]) -> WriteOutcome:
        _file, label = item
        threads[label] = threading.get_ident()
        order.append(label)
        if label == "bad":
            raise ValueError("unusable")
        return WriteOutcome.WRITTEN

    items = [("a", "first"), ("b", "bad"), ("a", "second"), ("c", "other")]
    outcomes = run_concurrently(items, write_one, key=lambda item: item[0], threads=WRITE_THREADS)
    assert [o if isinstance(o, WriteOutcome) else type(o) for o in outcomes] == [
        WriteOutcome.WRITTEN, ValueError, WriteOutcome.WRITTEN, WriteOutcome.WRITTEN]  # fmt: skip
    # one file's results run one after the other on one thread, in message order
    assert order.index("first") < order.index("second") and threads["first"] == threads["second"]


def test_unreadable_results_have_no_key_and_stand_alone() -> None:
    assert output_key(b"not json") is None
    seen: list[bytes] = []
    run_concurrently([b"x", b"y"], lambda body: seen.append(body) or WriteOutcome.WRITTEN, key=output_key, threads=2)
    assert sorted(seen) == [b"x", b"y"]


def test_storage_requests_of_a_small_file_in_the_function_app() -> None:
    """submit: the input's properties with its content (one ranged read) and the new record; write: the record,
    the output (create-only), the check for an error record it supersedes, and the record's new state."""
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "a.csv", b"a,b\n1,2\n", {"session_id": "s1"})
    ledger = Ledger(blobs, "ledger")
    blobs.ops.clear()
    submit_blob("input", "a.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=NOW)
    assert +blobs.ops == {"peek": 1, "write": 1}
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    result = InferenceResult(request_id=request.request_id, status=ResultStatus.SUCCEEDED, input_name="a.csv",
                             model=request.model, rows_scored=1,
                             output=OutputRef.inline(b"a,b,prediction\n1,2,0\n", DataFormat.CSV, None))  # fmt: skip
    blobs.ops.clear()
    assert write_result(result.to_json(), settings=SETTINGS, blobs=blobs, ledger=ledger, now=NOW) == "written"
    assert +blobs.ops == {"read": 1, "write": 2, "properties": 1}


@pytest.fixture
def blobs(monkeypatch: pytest.MonkeyPatch) -> FakeBlobStore:
    """The store the trigger's services use."""
    store = FakeBlobStore()
    wired = services(settings=SETTINGS, blobs=store, bus=FakeBus(), clock=FixedClock())
    monkeypatch.setattr(write_trigger, "services", lambda: wired)
    return store


def result_message(result: InferenceResult) -> func.ServiceBusMessage:
    props: dict[str, Any] = dict(result.application_properties())
    return func.servicebus.ServiceBusMessage(body=result.to_json(), message_id=result.message_id, session_id="s1",
                                             content_type="application/json", delivery_count=1,
                                             application_properties=props, user_properties=props)  # fmt: skip


def small_success(blobs: FakeBlobStore, name: str) -> InferenceResult:
    blobs.put("input", name, b"a,b\n1,2\n", {"session_id": "s1"})
    bus = FakeBus()
    submit_blob("input", name, settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"), now=NOW)
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    return InferenceResult(request_id=request.request_id, status=ResultStatus.SUCCEEDED, input_name=name,
                           model=request.model, rows_scored=1,
                           output=OutputRef.inline(b"a,b,prediction\n1,2,0\n", DataFormat.CSV, None))  # fmt: skip


def test_the_trigger_writes_a_folders_batch_with_one_listing_each_result_in_its_own_span(
    blobs: FakeBlobStore, spans: InMemorySpanExporter
) -> None:
    results = [small_success(blobs, f"day/{i}.csv") for i in range(5)]
    blobs.ops_by_container.clear()
    write_trigger.write_result.build().get_user_function()([result_message(r) for r in results])
    assert {kind: n for (kind, c), n in blobs.ops_by_container.items() if c == "output" and n} == {
        "write": 5,
        "list": 1,
    }
    written = [s for s in spans.get_finished_spans() if s.attributes and s.attributes.get(pipeline.STAGE) == "write"]
    # One span per result, and the success recorded (after the batch's listing) under it: the ledger's attributes.
    assert sorted((s.attributes or {})[pipeline.REQUEST_ID] for s in written) == sorted(r.request_id for r in results)
    for span in written:
        attributes = span.attributes or {}
        assert attributes[pipeline.OUTCOME] == "written" and str(attributes[pipeline.INPUT_NAME]).startswith("day/")


def test_the_trigger_raises_for_the_result_it_could_not_write_after_writing_the_others(
    blobs: FakeBlobStore, spans: InMemorySpanExporter
) -> None:
    good = [small_success(blobs, f"day/{i}.csv") for i in range(2)]
    bad = InferenceResult(request_id="e" * 32, status=ResultStatus.SUCCEEDED, input_name="day/../x.csv",
                          model="default", output=OutputRef.inline(b"a\n", DataFormat.CSV, None))  # fmt: skip
    with pytest.raises(write_trigger.WriteBatchFailed, match="1 of 3 results not written"):
        write_trigger.write_result.build().get_user_function()([result_message(m) for m in (good[0], bad, good[1])])
    assert blobs.names("output") == ["day/0.csv", "day/1.csv"]
    failed = [s for s in spans.get_finished_spans() if (s.attributes or {}).get(pipeline.REQUEST_ID) == "e" * 32]
    assert [s.status.status_code for s in failed] == [StatusCode.ERROR]
