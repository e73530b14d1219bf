"""A batch's successes look for the error records their outputs supersede with one listing of the folder they
share, made after the outputs were written (``write_batch``), and the listing that finds blobs by folder
(``shared.listing``), which reconcile uses too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from shared.contracts import (
    DataFormat,
    ErrorInfo,
    InferenceRequest,
    InferenceResult,
    OutputRef,
    RequestState,
    ResultStatus,
)
from shared.ledger import Ledger
from shared.listing import LIST_PAGE, find_by_listing
from shared.ports import BlobInfo
from shared.submit import submit_blob
from shared.write import WriteOutcome, write_batch

from .fakes import FakeBlobStore, FakeBus, FixedClock, make_settings

SETTINGS = make_settings()
CLOCK = FixedClock()


def submitted(blobs: FakeBlobStore, name: str, data: bytes = b"a,b\n1,2\n") -> InferenceRequest:
    """The input stored now and submitted: its request, as the message carries it."""
    bus = FakeBus()
    blobs.put("input", name, data, {"session_id": "s1"})
    submit_blob("input", name, settings=SETTINGS, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"),
                now=CLOCK.now())  # fmt: skip
    return InferenceRequest.from_json(bus.sent[-1].message.body)


def success(request: InferenceRequest) -> InferenceResult:
    output = OutputRef.inline(f"a,prediction\n{request.blob_name},1\n".encode(), DataFormat.CSV, None)
    return InferenceResult(request_id=request.request_id, status=ResultStatus.SUCCEEDED, input_name=request.blob_name,
                           model=request.model, rows_scored=1, output=output, attempt=request.attempt)  # fmt: skip


def failure(request: InferenceRequest) -> InferenceResult:
    return InferenceResult(request_id=request.request_id, status=ResultStatus.FAILED, input_name=request.blob_name,
                           model=request.model, error=ErrorInfo("invalid_input", "bad rows"),
                           attempt=request.attempt)  # fmt: skip


def write(blobs: FakeBlobStore, results: list[InferenceResult]) -> list[WriteOutcome | Exception]:
    return write_batch([r.to_json() for r in results], settings=SETTINGS, blobs=blobs, ledger=Ledger(blobs, "ledger"),
                       clock=CLOCK)  # fmt: skip


def output_ops(blobs: FakeBlobStore) -> dict[str, int]:
    return {kind: n for (kind, container), n in blobs.ops_by_container.items() if container == "output" and n}


def state(blobs: FakeBlobStore, request: InferenceRequest) -> RequestState | None:
    record = Ledger(blobs, "ledger").get(request.request_id)
    return None if record is None else record.state


def test_a_batch_of_small_files_in_one_folder_lists_it_once_instead_of_a_read_each() -> None:
    blobs = FakeBlobStore()
    requests = [submitted(blobs, f"day/{i:03d}.csv") for i in range(20)]
    blobs.ops_by_container.clear()
    assert write(blobs, [success(r) for r in requests]) == [WriteOutcome.WRITTEN] * 20
    assert output_ops(blobs) == {"write": 20, "list": 1}  # no Get Blob Properties of any error record
    assert all(state(blobs, r) == RequestState.SUCCEEDED for r in requests)
    assert blobs.names("output") == [f"day/{i:03d}.csv" for i in range(20)]


class JournalStore(FakeBlobStore):
    """Keeps the order of the requests to the output container and the ledger."""

    def __init__(self) -> None:
        super().__init__()
        self.journal: list[tuple[str, str, str]] = []

    def write(self, container: str, name: str, data: bytes, **kwargs: object) -> str:  # type: ignore[override]
        self.journal.append(("write", container, name))
        return super().write(container, name, data, **kwargs)  # type: ignore[arg-type]

    def list(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        self.journal.append(("list", container, prefix))
        return super().list(container, prefix)


def test_the_listing_comes_after_every_output_it_vouches_for_and_before_the_ledger_says_succeeded() -> None:
    blobs = JournalStore()
    requests = [submitted(blobs, f"day/{i}.csv") for i in range(8)]
    blobs.journal.clear()
    write(blobs, [success(r) for r in requests])
    listing = blobs.journal.index(("list", "output", "errors/day/"))
    outputs = [i for i, (kind, container, _) in enumerate(blobs.journal) if container == "output"]
    records = [i for i, (kind, container, _) in enumerate(blobs.journal) if container == "ledger"]
    assert len(outputs) == 9 and max(outputs) == listing and len(records) == 8 and min(records) > listing


def test_an_older_versions_error_record_in_the_folder_is_still_removed() -> None:
    """b.csv failed, was uploaded again and now succeeds with the others: the listing shows its error record,
    which is then looked up and removed as for a single result; the others are not looked up."""
    blobs = FakeBlobStore()
    old = submitted(blobs, "day/b.csv", b"a,b\nx,y\n")
    assert write(blobs, [failure(old)]) == [WriteOutcome.ERROR_RECORDED]
    requests = [submitted(blobs, f"day/{name}.csv") for name in "abc"]
    assert requests[1].request_id != old.request_id
    blobs.ops_by_container.clear()
    assert write(blobs, [success(r) for r in requests]) == [WriteOutcome.WRITTEN] * 3
    assert blobs.names("output") == ["day/a.csv", "day/b.csv", "day/c.csv"]
    # one listing, then b's error record read and deleted (after checking that b's version is the current one)
    assert output_ops(blobs) == {"write": 3, "list": 1, "properties": 1, "delete": 1}
    assert blobs.ops_by_container["properties", "input"] == 1


def test_results_in_different_folders_look_up_their_error_records_one_by_one() -> None:
    blobs = FakeBlobStore()
    requests = [submitted(blobs, name) for name in ("x/a.csv", "y/b.csv", "top.csv")]
    blobs.ops_by_container.clear()
    assert write(blobs, [success(r) for r in requests]) == [WriteOutcome.WRITTEN] * 3
    assert output_ops(blobs) == {"write": 3, "properties": 3}


def test_results_of_one_input_in_a_batch_are_each_finished_before_the_next() -> None:
    """A success and, later in the batch, a failure of the same request: the failure finds the success recorded
    and is ignored. A failure and then a success: the success replaces the error record."""
    blobs = FakeBlobStore()
    first, second, other = (submitted(blobs, f"day/{name}.csv") for name in ("first", "second", "other"))
    outcomes = write(blobs, [success(first), failure(second), success(other), failure(first), success(second)])
    assert outcomes == [WriteOutcome.WRITTEN, WriteOutcome.ERROR_RECORDED, WriteOutcome.WRITTEN,
                        WriteOutcome.SUPERSEDED, WriteOutcome.WRITTEN]  # fmt: skip
    assert blobs.names("output") == ["day/first.csv", "day/other.csv", "day/second.csv"]
    assert {state(blobs, r) for r in (first, second, other)} == {RequestState.SUCCEEDED}


def test_a_result_that_cannot_be_written_fails_alone() -> None:
    blobs = FakeBlobStore()
    good = [submitted(blobs, f"day/{i}.csv") for i in range(3)]
    bad = replace(success(good[0]), request_id="f" * 32, input_name="day/../escape.csv")
    outcomes = write(blobs, [success(good[0]), bad, success(good[1]), success(good[2])])
    assert isinstance(outcomes[1], ValueError) and "unusable input name" in str(outcomes[1])
    assert [o for i, o in enumerate(outcomes) if i != 1] == [WriteOutcome.WRITTEN] * 3
    assert blobs.names("output") == ["day/0.csv", "day/1.csv", "day/2.csv"]


class FailingListStore(FakeBlobStore):
    def list(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        raise ConnectionError("listing failed")


def test_a_failed_listing_falls_back_to_a_look_up_each() -> None:
    blobs = FailingListStore()
    requests = [submitted(blobs, f"day/{i}.csv") for i in range(3)]
    blobs.ops_by_container.clear()
    assert write(blobs, [success(r) for r in requests]) == [WriteOutcome.WRITTEN] * 3
    assert output_ops(blobs) == {"write": 3, "properties": 3}


@pytest.mark.parametrize("others", [0, 3 * LIST_PAGE])
def test_a_name_is_absent_only_if_its_folders_listing_ran_to_the_end(others: int) -> None:
    """Two names missing from a folder: listed through they are absent; behind three pages of other blobs the
    listing stops after two (as many as the reads it would save) and they stay unknown."""
    blobs = FakeBlobStore()
    for i in range(others):
        blobs.put("c", f"f/0-{i:05d}", b"")
    blobs.put("c", "f/0-00000-here", b"")
    wanted = [("c", "f/0-00000-here"), ("c", "f/z-gone"), ("c", "f/z-gone-too"), ("c", "g/alone")]
    presence = find_by_listing(blobs, wanted)
    assert presence.found == {("c", "f/0-00000-here")}
    assert presence.absent == (set() if others else {("c", "f/z-gone"), ("c", "f/z-gone-too")})
    assert blobs.ops["list"] == 1 and blobs.ops["properties"] == 0  # "g/alone" is left to the caller
