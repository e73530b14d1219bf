"""Results of one batch: independent files written at once, one file's results in order, outcomes kept apart;
and what a small file's submission and result cost in storage requests."""

from __future__ import annotations

import threading

from shared.concurrency import run_concurrently
from shared.contracts import DataFormat, InferenceRequest, InferenceResult, OutputRef, ResultStatus
from shared.ledger import Ledger
from shared.submit import submit_blob
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
    """submit: the input's properties and the new record (marked in flight); write: the record, the output
    (create-only), the check for an error record it supersedes, and the record's new state."""
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "a.csv", b"a,b\n1,2\n", {"session_id": "s1"})
    ledger = Ledger(blobs, "ledger")
    blobs.ops.clear()
    submit_blob("input", "a.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=NOW)
    assert +blobs.ops == {"properties": 1, "write": 1}
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    result = InferenceResult(request_id=request.request_id, status=ResultStatus.SUCCEEDED, input_name="a.csv",
                             model=request.model, rows_scored=1,
                             output=OutputRef.inline(b"a,b,prediction\n1,2,0\n", DataFormat.CSV, None))  # fmt: skip
    blobs.ops.clear()
    assert write_result(result.to_json(), settings=SETTINGS, blobs=blobs, ledger=ledger, now=NOW) == "written"
    assert +blobs.ops == {"read": 1, "write": 2, "properties": 1}
