"""The message contracts round-trip and reject what does not follow them."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from shared.contracts import (
    Admission,
    AsyncScoringBatch,
    AsyncScoringBatchReply,
    AsyncScoringRequest,
    ContractError,
    DataFormat,
    ErrorCode,
    ErrorInfo,
    FileAdmission,
    InferenceRequest,
    InferenceResult,
    OutputRef,
    ReplyTo,
    ResultStatus,
    RowError,
    derive_request_id,
    detect_format,
    error_blob_name,
)


def _request() -> InferenceRequest:
    return InferenceRequest(
        request_id=derive_request_id("input", "a/b.csv", '"0x8D"'),
        container="input",
        blob_name="a/b.csv",
        blob_url="http://127.0.0.1:10000/devstoreaccount1/input/a/b.csv",
        etag='"0x8D"',
        size=123,
        format=DataFormat.CSV,
        compression=None,
        session_id="s-1",
        model="default",
        submitted_at="2026-01-01T00:00:00.000Z",
    )


def test_request_round_trips_and_carries_routing_properties() -> None:
    request = _request()
    assert InferenceRequest.from_json(request.to_json()) == request
    assert request.application_properties() == {
        "model": "default",
        "content_type": "text/csv",
        "request_id": request.request_id,
    }


def test_the_ledger_etag_is_optional_both_ways() -> None:
    named = replace(_request(), ledger_etag='"0x8DC0FFEE"')
    assert InferenceRequest.from_json(named.to_json()) == named
    older = {k: v for k, v in json.loads(_request().to_json()).items() if k != "ledger_etag"}
    assert InferenceRequest.from_json(json.dumps(older)).ledger_etag is None  # a message from before the field
    with pytest.raises(ContractError, match="ledger_etag"):
        InferenceRequest.from_json(json.dumps({**older, "ledger_etag": 7}))


def test_a_small_inputs_bytes_travel_with_both_requests_and_stay_out_of_their_repr() -> None:
    request = replace(_request(), input_b64="YSxiCjEsMgo=")
    assert InferenceRequest.from_json(request.to_json()) == request
    assert InferenceRequest.from_json(_request().to_json()).input_b64 is None
    scoring = AsyncScoringRequest(request_id="r1", blob_url="http://blob?sig=x", reply=ReplyTo("t", "s"),
                                  input_name="a.csv", format=DataFormat.CSV, input_b64=request.input_b64)  # fmt: skip
    assert AsyncScoringRequest.from_json(scoring.to_json()).input_bytes() == b"a,b\n1,2\n"
    assert replace(scoring, input_b64=None).input_bytes() is None  # read from blob_url
    assert "YSxi" not in repr(request) + repr(scoring)
    with pytest.raises(ContractError, match="input_b64 is not valid base64"):
        replace(scoring, input_b64="YSxi*").input_bytes()


def test_request_id_is_stable_per_etag_and_changes_with_it() -> None:
    first = derive_request_id("input", "x.csv", '"0x1"')
    assert first == derive_request_id("input", "x.csv", "0x1")  # quotes around an ETag do not matter
    assert first != derive_request_id("input", "x.csv", '"0x2"')
    assert first != derive_request_id("input", "y.csv", '"0x1"')


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", (DataFormat.CSV, None)),
        ("A.CSV.GZ", (DataFormat.CSV, "gzip")),
        ("dir/a.jsonl", (DataFormat.JSONL, None)),
        ("a.ndjson.gz", (DataFormat.JSONL, "gzip")),
        ("dir/a.parquet", (DataFormat.PARQUET, None)),
        ("A.Parquet.gz", (DataFormat.PARQUET, "gzip")),
        ("a.xlsx", None),
        ("a.gz", None),
        ("csv", None),
    ],
)
def test_detect_format(name: str, expected: tuple[DataFormat, str | None] | None) -> None:
    assert detect_format(name) == expected


def test_wrong_schema_version_and_fields_are_named() -> None:
    body = json.loads(_request().to_json())
    with pytest.raises(ContractError, match="unsupported version 2"):
        InferenceRequest.from_json({**body, "version": 2})
    with pytest.raises(ContractError, match="expected schema 'inference-request'"):
        InferenceRequest.from_json({**body, "schema": "inference-result"})
    with pytest.raises(ContractError, match="missing field 'blob_url'"):
        InferenceRequest.from_json({k: v for k, v in body.items() if k != "blob_url"})
    with pytest.raises(ContractError, match="field 'size' must be int"):
        InferenceRequest.from_json({**body, "size": True})
    with pytest.raises(ContractError, match="not JSON"):
        InferenceRequest.from_json(b"\xff\xfe")


def test_async_scoring_request_round_trips() -> None:
    req = AsyncScoringRequest(
        request_id="r1",
        blob_url="http://blob?sig=x",
        reply=ReplyTo(topic="inference-results", session_id="s"),
        input_name="a.jsonl.gz",
        format=DataFormat.JSONL,
        compression="gzip",
    )
    assert AsyncScoringRequest.from_json(req.to_json()) == req
    body = json.loads(req.to_json())
    with pytest.raises(ContractError, match="mode must be 'async'"):
        AsyncScoringRequest.from_json({**body, "mode": "sync"})
    with pytest.raises(ContractError, match=r"reply: missing field 'session_id'"):
        AsyncScoringRequest.from_json({**body, "reply": {"topic": "t"}})


def test_result_inline_output_round_trips_and_is_checked() -> None:
    data = b"a,prediction,probability\n1,Yes,0.9\n"
    result = InferenceResult(
        request_id="r1",
        status=ResultStatus.SUCCEEDED,
        input_name="a.csv",
        model="default",
        rows_scored=1,
        rows_failed=1,
        row_errors=(RowError(row=2, message="tenure: not a number"),),
        output=OutputRef.inline(data, DataFormat.CSV, None),
    )
    parsed = InferenceResult.from_json(result.to_json())
    assert parsed == result
    assert parsed.output is not None and parsed.output.inline_bytes() == data
    assert result.message_id == "r1:result:1"
    tampered = json.loads(result.to_json())
    tampered["output"]["sha256"] = "0" * 64
    output = InferenceResult.from_json(tampered).output
    assert output is not None
    with pytest.raises(ContractError, match="does not match"):
        output.inline_bytes()


def test_result_requires_output_or_error() -> None:
    with pytest.raises(ContractError, match="needs an output"):
        InferenceResult(request_id="r", status=ResultStatus.SUCCEEDED, input_name="a.csv", model="default")
    failed = InferenceResult(
        request_id="r",
        status=ResultStatus.FAILED,
        input_name="a.csv",
        model="default",
        error=ErrorInfo(code=ErrorCode.EMPTY_FILE, message="the file is empty"),
    )
    assert InferenceResult.from_json(failed.to_json()) == failed
    body = json.loads(failed.to_json())
    with pytest.raises(ContractError, match="exactly one of inline_b64 and blob_url"):
        InferenceResult.from_json({**body, "status": "succeeded", "error": None, "output": {
            "format": "csv", "compression": None, "size": 1, "sha256": "x"}})  # fmt: skip


def test_error_blob_name() -> None:
    assert error_blob_name("dir/a.csv") == "errors/dir/a.csv.error.json"


def _scoring_request(request_id: str, session: str, model: str = "default") -> AsyncScoringRequest:
    return AsyncScoringRequest(
        request_id=request_id,
        blob_url=f"https://acct.blob.example/input/{request_id}.csv?sig=x",
        reply=ReplyTo(topic="inference-results", session_id=session),
        input_name=f"{request_id}.csv",
        format=DataFormat.CSV,
        model=model,
    )


def test_a_batch_round_trips_with_each_files_own_reply_session() -> None:
    batch = AsyncScoringBatch(model="default", requests=(_scoring_request("a", "s1"), _scoring_request("b", "s2")))
    assert AsyncScoringBatch.from_json(batch.to_json()) == batch
    body = json.loads(batch.to_json())
    assert body["schema"] == "async-scoring-batch" and body["mode"] == "async"
    assert [r["reply"]["session_id"] for r in body["requests"]] == ["s1", "s2"]


def test_batch_entries_take_the_batch_model_when_they_name_none() -> None:
    body = json.loads(AsyncScoringBatch(model="iris", requests=(_scoring_request("a", "s", "iris"),)).to_json())
    del body["requests"][0]["model"]
    assert AsyncScoringBatch.from_json(body).requests[0].model == "iris"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(requests=[]), "1 to 1000 requests"),
        (lambda b: b["requests"][0].update(model="other"), "every request must be for model 'default'"),
        (lambda b: b["requests"][1].pop("blob_url"), r"requests\[1\]: missing field 'blob_url'"),
        (lambda b: b.update(requests=["x"]), "each entry must be an object"),
        (lambda b: b.update(mode="sync"), "mode must be 'async'"),
    ],
)
def test_a_batch_that_breaks_the_contract_is_refused_naming_the_entry(change: Any, message: str) -> None:
    body = json.loads(
        AsyncScoringBatch(model="default", requests=(_scoring_request("a", "s"), _scoring_request("b", "s"))).to_json()
    )
    change(body)
    with pytest.raises(ContractError, match=message):
        AsyncScoringBatch.from_json(body)


def test_a_batch_reply_round_trips_and_refuses_an_unknown_status() -> None:
    reply = AsyncScoringBatchReply(
        admissions=(
            FileAdmission("a", 1, Admission.ACCEPTED),
            FileAdmission("b", 2, Admission.DUPLICATE),
            FileAdmission("c", 1, Admission.REJECTED, code="invalid_name", message="bad name"),
        )
    )
    assert AsyncScoringBatchReply.from_json(reply.to_json()) == reply
    body = json.loads(reply.to_json())
    body["admissions"][0]["status"] = "maybe"
    with pytest.raises(ContractError, match="unknown status 'maybe'"):
        AsyncScoringBatchReply.from_json(body)
