"""Staged outputs are deleted once the final output is durably written, and only then; redelivery is safe."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from shared.contracts import DataFormat, InferenceResult, OutputRef, RequestState, ResultStatus
from shared.ledger import Ledger
from shared.write import OutputMismatch, WriteOutcome, write_result

from .fakes import ACCOUNT, FakeBlobStore, FixedClock, make_settings

SETTINGS = make_settings()
NOW = FixedClock().now()
RID = "0" * 31 + "2"
DATA = b"a,b,prediction\n" + b"1,2,1\n" * 50_000


def staged(blobs: FakeBlobStore, attempt: int = 1, data: bytes = DATA, name: str = "in/a.csv") -> InferenceResult:
    blobs.put("results", f"{RID}/{attempt}/{name}", data)
    ref = OutputRef(format=DataFormat.CSV, compression=None, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    blob_url=f"{blobs.url('results', f'{RID}/{attempt}/{name}')}?sv=x&sig=y")  # fmt: skip
    return InferenceResult(request_id=RID, status=ResultStatus.SUCCEEDED, input_name=name, model="default",
                           rows_scored=50_000, output=ref, attempt=attempt)  # fmt: skip


def write(blobs: FakeBlobStore, result: InferenceResult) -> WriteOutcome:
    return write_result(result.to_json(), settings=SETTINGS, blobs=blobs, ledger=Ledger(blobs, "ledger"), now=NOW)


def test_staged_output_is_deleted_after_the_output_and_the_ledger_are_written() -> None:
    blobs = FakeBlobStore()
    result = staged(blobs)
    order: list[str] = []
    original_delete, original_write = blobs.delete, blobs.write

    def delete(container: str, name: str, *, if_match: str | None = None) -> None:
        order.append(f"delete {container}/{name}")
        original_delete(container, name, if_match=if_match)

    def write_blob(container: str, name: str, data: bytes, **kwargs: object) -> str:
        order.append(f"write {container}")
        return original_write(container, name, data, **kwargs)  # type: ignore[arg-type]

    blobs.delete, blobs.write = delete, write_blob  # type: ignore[method-assign]
    assert write(blobs, result) == WriteOutcome.WRITTEN
    assert blobs.read("output", "in/a.csv")[0] == DATA
    assert blobs.names("results") == []
    assert order.index(f"delete results/{RID}/1/in/a.csv") > max(
        i for i, step in enumerate(order) if step in ("write output", "write ledger")
    ), order
    record = Ledger(blobs, "ledger").get(RID)
    assert record is not None and record.state == RequestState.SUCCEEDED


def test_redelivery_after_the_delete_finds_the_output_and_does_nothing_more() -> None:
    blobs = FakeBlobStore()
    result = staged(blobs)
    assert write(blobs, result) == WriteOutcome.WRITTEN
    assert write(blobs, result) == WriteOutcome.ALREADY_WRITTEN
    assert blobs.read("output", "in/a.csv")[0] == DATA and len(blobs.copies) == 1


def test_a_failed_copy_keeps_the_staged_output() -> None:
    blobs = FakeBlobStore()
    result = staged(blobs)
    blobs.put("results", f"{RID}/1/in/a.csv", DATA[:-1])  # the copy comes out one byte short
    with pytest.raises(OutputMismatch):
        write(blobs, result)
    assert blobs.names("results") == [f"{RID}/1/in/a.csv"]


def test_a_stale_result_after_a_newer_success_is_superseded_not_an_error() -> None:
    blobs = FakeBlobStore()
    first, second = staged(blobs, attempt=1), staged(blobs, attempt=2, data=DATA + b"3,4,0\n")
    assert write(blobs, first) == WriteOutcome.WRITTEN
    assert write(blobs, second) == WriteOutcome.WRITTEN
    assert write(blobs, first) == WriteOutcome.SUPERSEDED  # its staged output is gone; attempt 2's output stands
    assert blobs.read("output", "in/a.csv")[0] == DATA + b"3,4,0\n"
    assert blobs.names("results") == []


@pytest.mark.parametrize(
    "url",
    [
        f"{ACCOUNT}/input/{RID}/1/in/a.csv",  # our account, another container
        f"{ACCOUNT}/results/another-request/1/in/a.csv",  # another request's staged output
        f"https://elsewhere.example/results/{RID}/1/in/a.csv?sig=z",  # another account or host
        f"{ACCOUNT}/results/{RID}/../input/{RID}/1/in/a.csv",  # a dot segment out of the request's folder
        f"{ACCOUNT}/results/{RID}/1/..%2F..%2F..%2Finput%2Fsecret.csv",  # the same, percent-encoded
    ],
)
def test_an_output_that_is_not_this_requests_staged_output_gets_an_error_record(url: str) -> None:
    blobs = FakeBlobStore()
    for container, name in [("input", f"{RID}/1/in/a.csv"), ("results", "another-request/1/in/a.csv")]:
        blobs.put(container, name, DATA)
    ref = OutputRef(DataFormat.CSV, None, len(DATA), hashlib.sha256(DATA).hexdigest(), blob_url=url)
    result = InferenceResult(request_id=RID, status=ResultStatus.SUCCEEDED, input_name="in/a.csv", model="default",
                             output=ref)  # fmt: skip
    assert write(blobs, result) == WriteOutcome.ERROR_RECORDED
    assert blobs.copies == [] and blobs.names("output") == ["errors/in/a.csv.error.json"]
    document = json.loads(blobs.read("output", "errors/in/a.csv.error.json")[0])
    assert document["error"]["code"] == "blob_url_not_allowed"
    assert url.split("?")[0] in document["error"]["message"] and "sig=" not in document["error"]["message"]
    assert blobs.names("input") == [f"{RID}/1/in/a.csv"] and blobs.names("results") == ["another-request/1/in/a.csv"]
    record = Ledger(blobs, "ledger").get(RID)
    assert record is not None and record.state == RequestState.FAILED
    assert FakeBlobStore().locate(f"{ACCOUNT}/results/{RID}/1/x.csv?sig=z") == ("results", f"{RID}/1/x.csv")


def test_the_store_copies_only_from_its_own_account() -> None:
    blobs = FakeBlobStore()
    with pytest.raises(ValueError, match="not a blob of this storage account"):
        blobs.copy_from_url(f"https://elsewhere.example/results/{RID}/1/x.csv", "output", "x.csv",
                            content_type="text/csv", metadata={})  # fmt: skip


def test_a_refused_output_after_a_success_changes_nothing() -> None:
    blobs = FakeBlobStore()
    assert write(blobs, staged(blobs)) == WriteOutcome.WRITTEN
    ref = OutputRef(DataFormat.CSV, None, 5, "0" * 64, blob_url=f"https://elsewhere.example/results/{RID}/1/a.csv")
    forged = InferenceResult(request_id=RID, status=ResultStatus.SUCCEEDED, input_name="in/a.csv", model="default",
                             output=ref, attempt=2)  # fmt: skip
    assert write(blobs, forged) == WriteOutcome.SUPERSEDED
    assert blobs.names("output") == ["in/a.csv"] and blobs.read("output", "in/a.csv")[0] == DATA


def test_a_failed_delete_is_logged_and_the_write_still_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    blobs = FakeBlobStore()
    result = staged(blobs)

    def refuse(container: str, name: str, *, if_match: str | None = None) -> None:
        if container == "results":
            raise PermissionError("403 AuthorizationPermissionMismatch")

    original = blobs.delete
    blobs.delete = lambda c, n, *, if_match=None: refuse(c, n) or original(c, n, if_match=if_match)  # type: ignore[method-assign,func-returns-value]
    with caplog.at_level(logging.WARNING, logger="shared.write"):
        assert write(blobs, result) == WriteOutcome.WRITTEN
    assert "could not delete staged output" in caplog.text
    assert blobs.names("results") == [f"{RID}/1/in/a.csv"]  # left for the lifecycle rule
