"""write use case with fakes: idempotent outputs (inline and copied), error records, ledger outcome."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from shared.contracts import DataFormat, ErrorInfo, InferenceResult, OutputRef, RequestState, ResultStatus, RowError
from shared.ledger import Ledger, LedgerRecord
from shared.write import OutputMismatch, WriteOutcome, write_result

from .fakes import FakeBlobStore, FixedClock, make_settings

SETTINGS = make_settings()
NOW = FixedClock().now()
RID = "0" * 31 + "1"
OUT = b"a,b,prediction,probability\n1,2,1,0.9\n"


def ok_inline(attempt: int = 1) -> InferenceResult:
    output = OutputRef.inline(OUT, DataFormat.CSV, None)
    return InferenceResult(request_id=RID, status=ResultStatus.SUCCEEDED, input_name="d/a.csv", model="default",
                           rows_scored=1, output=output, attempt=attempt)  # fmt: skip


def write(blobs: FakeBlobStore, result: InferenceResult) -> WriteOutcome:
    return write_result(result.to_json(), settings=SETTINGS, blobs=blobs, ledger=Ledger(blobs, "ledger"), now=NOW)


def test_inline_output_is_written_once_with_identical_bytes() -> None:
    blobs = FakeBlobStore()
    result = ok_inline()
    assert write(blobs, result) == WriteOutcome.WRITTEN
    first = blobs.blobs[("output", "d/a.csv")]
    assert write(blobs, ok_inline()) == WriteOutcome.ALREADY_WRITTEN
    second = blobs.blobs[("output", "d/a.csv")]
    assert first.data == second.data == OUT and first.etag == second.etag  # not rewritten
    assert blobs.names("output") == ["d/a.csv"]
    assert first.metadata == {"request_id": RID, "sha256": hashlib.sha256(OUT).hexdigest()}
    assert first.content_type == "text/csv"
    record = Ledger(blobs, "ledger").get(RID)
    assert record is not None and record.state == RequestState.SUCCEEDED
    assert (record.output_location, record.rows_scored, record.completed_at) == (
        "output/d/a.csv",
        1,
        result.completed_at,
    )
    # The marker stays until reconcile has checked the output (test_fa_reconcile).
    assert [m.request_id for m in Ledger(blobs, "ledger").inflight()] == [RID]


def test_an_inline_output_replaces_a_different_file_of_the_same_name() -> None:
    blobs = FakeBlobStore()
    blobs.put("output", "d/a.csv", b"an older output\n", {"request_id": "other", "sha256": "0" * 64})
    assert write(blobs, ok_inline()) == WriteOutcome.WRITTEN
    stored = blobs.blobs[("output", "d/a.csv")]
    assert stored.data == OUT and stored.metadata["sha256"] == hashlib.sha256(OUT).hexdigest()


def test_large_output_is_copied_from_the_results_blob_and_checked() -> None:
    blobs = FakeBlobStore()
    data = b"x" * 300_000
    blobs.put("results", f"{RID}/1/a.csv", data)
    url = blobs.url("results", f"{RID}/1/a.csv")
    ref = OutputRef(format=DataFormat.CSV, compression=None, size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), blob_url=url)  # fmt: skip
    result = InferenceResult(request_id=RID, status=ResultStatus.SUCCEEDED, input_name="a.csv", model="default",
                             rows_scored=5, output=ref)  # fmt: skip
    assert write(blobs, result) == WriteOutcome.WRITTEN
    assert blobs.read("output", "a.csv")[0] == data and len(blobs.copies) == 1
    assert blobs.names("results") == []  # the staged output is deleted once written (test_fa_write_staged)
    assert write(blobs, result) == WriteOutcome.ALREADY_WRITTEN and len(blobs.copies) == 1
    blobs.put("results", f"{RID}/1/a.csv", data)
    wrong = InferenceResult(request_id=RID, status=ResultStatus.SUCCEEDED, input_name="b.csv", model="default",
                            output=OutputRef(DataFormat.CSV, None, 7, "f" * 64, blob_url=url))  # fmt: skip
    with pytest.raises(OutputMismatch):
        write(blobs, wrong)


def test_failed_result_writes_an_error_record_with_row_errors() -> None:
    blobs = FakeBlobStore()
    result = InferenceResult(request_id=RID, status=ResultStatus.FAILED, input_name="d/a.csv", model="default",
                             rows_failed=2, row_errors=(RowError(1, "tenure: not a number"), RowError(3, "bad")),
                             error=ErrorInfo("no_valid_rows", "no row could be scored"))  # fmt: skip
    assert write(blobs, result) == WriteOutcome.ERROR_RECORDED
    document = json.loads(blobs.read("output", "errors/d/a.csv.error.json")[0])
    assert document["error"] == {"code": "no_valid_rows", "message": "no row could be scored"}
    assert document["rows_failed"] == 2 and document["row_errors"][0] == {"row": 1, "message": "tenure: not a number"}
    record = Ledger(blobs, "ledger").get(RID)
    assert record is not None and record.state == RequestState.FAILED
    assert (record.error_location, record.rows_failed) == ("output/errors/d/a.csv.error.json", 2)


def test_failure_after_success_is_ignored_and_success_after_failure_wins() -> None:
    blobs = FakeBlobStore()
    failed = InferenceResult(request_id=RID, status=ResultStatus.FAILED, input_name="d/a.csv", model="default",
                             error=ErrorInfo("internal_error", "boom"))  # fmt: skip
    write(blobs, failed)
    write(blobs, ok_inline(attempt=2))
    assert write(blobs, failed) == WriteOutcome.SUPERSEDED
    record = Ledger(blobs, "ledger").get(RID)
    assert record is not None and record.state == RequestState.SUCCEEDED
    assert blobs.names("output") == ["d/a.csv"]  # the success removed its own earlier error record


def test_ledger_conflict_is_retried_not_clobbered() -> None:
    blobs = FakeBlobStore()
    blobs.fail_next_writes[("ledger", f"requests/{RID}.json")] = 2
    write(blobs, ok_inline())
    record = Ledger(blobs, "ledger").get(RID)
    assert record is not None and record.state == RequestState.SUCCEEDED


def test_result_with_an_unsafe_input_name_is_refused() -> None:
    blobs = FakeBlobStore()
    bad = InferenceResult(request_id=RID, status=ResultStatus.SUCCEEDED, input_name="../x.csv", model="default",
                          output=OutputRef.inline(OUT, DataFormat.CSV, None))  # fmt: skip
    with pytest.raises(ValueError, match="unusable input name"):
        write(blobs, bad)
    assert blobs.names("output") == []


def versioned(blobs: FakeBlobStore, rid: str, *, succeeded: bool) -> InferenceResult:
    """A request for the input's version stored now (its ETag in the ledger), and its result."""
    etag = blobs.put("input", "d/a.csv", b"x").strip('"')
    record = LedgerRecord.new(rid, container="input", name="d/a.csv", model="default", now=NOW, etag=etag)
    Ledger(blobs, "ledger").advance(rid, lambda current: current or record, now=NOW)
    if succeeded:
        return InferenceResult(request_id=rid, status=ResultStatus.SUCCEEDED, input_name="d/a.csv", model="default",
                               output=OutputRef.inline(OUT, DataFormat.CSV, None))  # fmt: skip
    return InferenceResult(request_id=rid, status=ResultStatus.FAILED, input_name="d/a.csv", model="default",
                           error=ErrorInfo(code="blob_not_found", message="gone"))  # fmt: skip


def test_the_current_versions_output_replaces_an_older_versions_error_record() -> None:
    """The input was lost and uploaded again: the old request failed, the new one succeeds."""
    blobs = FakeBlobStore()
    old = versioned(blobs, "0" * 31 + "a", succeeded=False)
    new = versioned(blobs, "0" * 31 + "b", succeeded=True)
    assert write(blobs, old) == WriteOutcome.ERROR_RECORDED
    assert write(blobs, new) == WriteOutcome.WRITTEN
    assert blobs.names("output") == ["d/a.csv"]


def test_an_older_versions_failure_after_the_current_output_is_not_recorded() -> None:
    blobs = FakeBlobStore()
    old = versioned(blobs, "0" * 31 + "a", succeeded=False)
    new = versioned(blobs, "0" * 31 + "b", succeeded=True)
    assert write(blobs, new) == WriteOutcome.WRITTEN
    write(blobs, old)
    assert blobs.names("output") == ["d/a.csv"]
    record = Ledger(blobs, "ledger").get(old.request_id)
    assert record is not None and record.state == RequestState.FAILED and record.error_location is None


def test_a_newer_versions_failure_is_shown_beside_an_older_output() -> None:
    blobs = FakeBlobStore()
    old = versioned(blobs, "0" * 31 + "a", succeeded=True)
    assert write(blobs, old) == WriteOutcome.WRITTEN
    new = versioned(blobs, "0" * 31 + "b", succeeded=False)
    assert write(blobs, new) == WriteOutcome.ERROR_RECORDED
    assert blobs.names("output") == ["d/a.csv", "errors/d/a.csv.error.json"]


def test_an_older_versions_late_success_does_not_replace_the_current_versions_output() -> None:
    """A small file's request carries the bytes it was submitted with: a result of the older version that comes
    after the newer one's (retried after throttling, say) leaves the newer output and is recorded."""
    blobs = FakeBlobStore()
    old = versioned(blobs, "0" * 31 + "a", succeeded=True)
    new = versioned(blobs, "0" * 31 + "b", succeeded=True)
    newer_output = b"a,prediction\n2,1\n"
    new = replace(new, output=OutputRef.inline(newer_output, DataFormat.CSV, None))
    assert write(blobs, new) == WriteOutcome.WRITTEN
    assert write(blobs, old) == WriteOutcome.SUPERSEDED
    assert blobs.blobs[("output", "d/a.csv")].data == newer_output
    record = Ledger(blobs, "ledger").get(old.request_id)
    assert record is not None and record.state == RequestState.SUCCEEDED  # reconcile leaves it alone


def test_an_older_versions_late_staged_output_is_not_copied_over_the_current_one() -> None:
    blobs = FakeBlobStore()
    old = versioned(blobs, "0" * 31 + "a", succeeded=True)
    new = versioned(blobs, "0" * 31 + "b", succeeded=True)
    assert write(blobs, new) == WriteOutcome.WRITTEN
    data = b"x" * 300_000
    blobs.put("results", f"{old.request_id}/1/a.csv", data)
    ref = OutputRef(format=DataFormat.CSV, compression=None, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    blob_url=blobs.url("results", f"{old.request_id}/1/a.csv"))  # fmt: skip
    assert write(blobs, replace(old, output=ref)) == WriteOutcome.SUPERSEDED
    assert blobs.blobs[("output", "d/a.csv")].data == OUT and blobs.copies == []
    assert blobs.names("results") == []  # the staged output is removed all the same


def test_the_current_versions_success_replaces_an_older_versions_output() -> None:
    blobs = FakeBlobStore()
    old = versioned(blobs, "0" * 31 + "a", succeeded=True)
    assert write(blobs, old) == WriteOutcome.WRITTEN
    new = versioned(blobs, "0" * 31 + "b", succeeded=True)
    newer_output = b"a,prediction\n2,1\n"
    assert write(blobs, replace(new, output=OutputRef.inline(newer_output, DataFormat.CSV, None))) == "written"
    assert blobs.blobs[("output", "d/a.csv")].data == newer_output


def test_a_transient_failure_is_left_for_reconcile_not_recorded() -> None:
    """The input's storage failed: nothing is said about the file; the request stays open with its marker."""
    blobs = FakeBlobStore()
    versioned(blobs, RID, succeeded=False)  # the request's ledger record
    error = ErrorInfo("input_unavailable", "reading the input blob failed with HTTP 500")
    transient = InferenceResult(request_id=RID, status=ResultStatus.FAILED, input_name="d/a.csv", model="churn",
                                error=error)  # fmt: skip
    assert write(blobs, transient) == WriteOutcome.LEFT_FOR_RECONCILE
    assert blobs.names("output") == []
    record = Ledger(blobs, "ledger").get(RID)
    assert record is not None and not record.terminal
    assert [m.request_id for m in Ledger(blobs, "ledger").inflight()] == [RID]
