"""Async scoring end to end: azmlinfsrv reads the input from Azurite by SAS URL and publishes the result
to the Service Bus emulator, where the test receives it on the client subscription's session."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import time
import uuid
from typing import Any

import mlflow.sklearn
import pandas as pd
import pytest

from scoring.examples.churn.sample import frame, sample_bytes
from shared.contracts import (
    INLINE_OUTPUT_MAX_BYTES,
    MAX_CONTEXT_CHARS,
    AsyncScoringRequest,
    DataFormat,
    ErrorCode,
    InferenceResult,
    ResultStatus,
)
from tests.fixtures.azurite import Azurite
from tests.fixtures.scoring import ScoringServer, ScoringServerFactory
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.support.scoring import (
    output_bytes,
    post,
    receive_results,
    result_of,
    result_of_request,
    scoring_request,
    submit,
)

pytestmark = pytest.mark.slow


def _submit(
    server: ScoringServer, azurite: Azurite, data: bytes, name: str, fmt: DataFormat, compression: str | None = None
) -> AsyncScoringRequest:
    blob = f"{uuid.uuid4().hex[:8]}/{name}"
    return submit(server.score_url, azurite, blob, data, fmt, input_name=name, compression=compression)


def _scored(
    server: ScoringServer,
    azurite: Azurite,
    servicebus: ServiceBusEmulator,
    data: bytes,
    name: str,
    fmt: DataFormat,
    compression: str | None = None,
) -> InferenceResult:
    """The succeeded result of scoring ``data`` as input file ``name``."""
    request = _submit(server, azurite, data, name, fmt, compression)
    result = result_of_request(servicebus.connection_string, request)
    assert result.status == ResultStatus.SUCCEEDED, result.error
    return result


def _expected_proba(server: ScoringServer, data: pd.DataFrame) -> list[float]:
    pipeline = mlflow.sklearn.load_model(str(server.model_dir))
    return list(pipeline.predict_proba(data)[:, list(pipeline.classes_).index("Yes")])


def test_small_csv_result_travels_inline_with_input_lines_kept(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = sample_bytes(300, "csv", seed=21)
    request = _submit(scoring_server, azurite, data, "small.csv", DataFormat.CSV)
    (message,) = receive_results(servicebus.connection_string, request.reply.session_id)
    result = result_of(message)
    assert message.message_id == result.message_id == f"{request.request_id}:result:1"
    assert message.application_properties[b"status"] == b"succeeded"
    assert result.status == ResultStatus.SUCCEEDED, result.error
    assert (result.rows_scored, result.rows_failed, result.input_name) == (300, 0, "small.csv")
    assert result.output is not None and result.output.inline_b64 is not None
    out_lines = output_bytes(result).decode().splitlines()
    in_lines = data.decode().splitlines()
    assert out_lines[0] == in_lines[0] + ",prediction,probability"
    expected = _expected_proba(scoring_server, frame(300, 21))
    for raw_in, raw_out, p in zip(in_lines[1:], out_lines[1:], expected, strict=True):
        prefix, label, probability = raw_out.rsplit(",", 2)
        assert prefix == raw_in
        assert math.isclose(float(probability), p if label == "Yes" else 1 - p, abs_tol=1e-9)
        assert label == ("Yes" if p > 0.5 else "No")


def test_large_csv_output_is_staged_as_a_results_blob(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = sample_bytes(8000, "csv", seed=22)
    result = _scored(scoring_server, azurite, servicebus, data, "big.csv", DataFormat.CSV)
    assert result.output is not None and result.output.blob_url is not None and result.output.inline_b64 is None
    assert f"/results/{result.request_id}/1/big.csv" in result.output.blob_url
    body = output_bytes(result)
    assert len(body) == result.output.size > INLINE_OUTPUT_MAX_BYTES
    assert hashlib.sha256(body).hexdigest() == result.output.sha256
    table = pd.read_csv(io.BytesIO(body))
    assert len(table) == result.rows_scored == 8000
    assert list(table["customerID"]) == list(frame(8000, 22)["customerID"])


def test_gzip_jsonl_gets_gzip_jsonl_with_two_keys_added(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = sample_bytes(500, "jsonl", seed=23, compress=True)
    result = _scored(scoring_server, azurite, servicebus, data, "rows.jsonl.gz", DataFormat.JSONL, "gzip")
    assert result.output is not None and result.output.compression == "gzip"
    rows = [json.loads(line) for line in output_bytes(result).splitlines()]
    originals = [json.loads(line) for line in gzip.decompress(data).splitlines()]
    assert len(rows) == 500
    expected = _expected_proba(scoring_server, pd.DataFrame(originals))
    for row, original, p in zip(rows, originals, expected, strict=True):
        assert {k: v for k, v in row.items() if k not in ("prediction", "probability")} == original
        assert math.isclose(row["probability"], p if row["prediction"] == "Yes" else 1 - p, abs_tol=1e-9)


def test_quoted_multiline_csv_fields_survive(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = sample_bytes(2000, "csv", seed=24, bad="quoted-multiline")
    result = _scored(scoring_server, azurite, servicebus, data, "quoted.csv", DataFormat.CSV)
    rows = list(csv.reader(io.StringIO(output_bytes(result).decode(), newline="")))
    originals = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert len(rows) == len(originals) == 2001
    assert all(out[:-2] == original for out, original in zip(rows[1:], originals[1:], strict=True))
    assert rows[1][0].endswith(", line\nnext")


def test_a_few_bad_rows_are_reported_and_the_rest_scored(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = sample_bytes(40, "csv", seed=25, bad="some-bad-rows")
    result = _scored(scoring_server, azurite, servicebus, data, "some-bad.csv", DataFormat.CSV)
    assert (result.rows_scored, result.rows_failed) == (37, 3)
    assert [e.row for e in result.row_errors] == [2, 5, 9]
    assert "tenure: 'x' is not a number" in result.row_errors[0].message
    assert "MonthlyCharges: 'NaN' is not a finite number" in result.row_errors[1].message
    assert "Contract: 'Weekly' is not one of" in result.row_errors[2].message
    assert len(output_bytes(result).splitlines()) == 38  # header + good rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_ragged_rows_are_bad_rows(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator, fmt: str
) -> None:
    data = sample_bytes(30, fmt, seed=26, bad="ragged")
    result = _scored(scoring_server, azurite, servicebus, data, f"ragged.{fmt}", DataFormat(fmt))
    assert (result.rows_scored, result.rows_failed) == (28, 2)
    assert [e.row for e in result.row_errors] == [3, 4]


def test_duplicate_request_is_acknowledged_but_scored_once(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = sample_bytes(50, "csv", seed=27)
    request = submit(scoring_server.score_url, azurite, "dup/dup.csv", data, DataFormat.CSV, input_name="dup.csv")
    second = post(scoring_server.score_url, request.to_json())
    assert second.status_code == 202
    assert second.json()["duplicate_of"] in ("queued", "running", "done")
    messages = receive_results(servicebus.connection_string, request.reply.session_id, count=2, wait=8)
    assert len(messages) == 1
    assert result_of(messages[0]).status == ResultStatus.SUCCEEDED
    # A new attempt of the same request is new work.
    retry = scoring_request(request.blob_url, "dup.csv", DataFormat.CSV, attempt=2)
    retry = type(retry)(**{**retry.__dict__, "request_id": request.request_id, "reply": request.reply})
    assert "duplicate_of" not in post(scoring_server.score_url, retry.to_json()).json()
    (again,) = receive_results(servicebus.connection_string, request.reply.session_id)
    assert result_of(again).attempt == 2


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda b: {**b, "reply": {"topic": "elsewhere", "session_id": "s"}}, ErrorCode.INVALID_REQUEST),
        (lambda b: {k: v for k, v in b.items() if k != "blob_url"}, ErrorCode.INVALID_REQUEST),
        (lambda b: {**b, "format": "xlsx"}, ErrorCode.INVALID_REQUEST),
        (lambda b: {**b, "version": 99}, ErrorCode.INVALID_REQUEST),
        (lambda b: {**b, "model": "churn-v9"}, ErrorCode.UNKNOWN_MODEL),
        (lambda b: {**b, "input_name": "../escape.csv"}, ErrorCode.INVALID_NAME),
        (lambda b: {**b, "blob_url": "file:///etc/passwd"}, ErrorCode.BLOB_URL_NOT_ALLOWED),
        (lambda b: {**b, "context": "x" * (MAX_CONTEXT_CHARS + 1)}, ErrorCode.INVALID_REQUEST),
    ],
)
def test_invalid_async_requests_are_rejected_with_400(scoring_server: ScoringServer, change: Any, code: str) -> None:
    body = json.loads(scoring_request("https://a/b/c.csv?sig=x", "c.csv", DataFormat.CSV).to_json())
    response = post(scoring_server.score_url, json.dumps(change(body)))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


def test_full_queue_answers_429_with_retry_after(
    scoring_server_factory: ScoringServerFactory, stalled_blob_server: str, servicebus: ServiceBusEmulator
) -> None:
    stalled_account = stalled_blob_server.split("/input/")[0]  # allowed, so requests reach the queue
    server = scoring_server_factory(
        SCORING_QUEUE_SIZE="1", SCORING_WORKERS="1", SCORING_RETRY_AFTER_SECONDS="7",
        INPUT_STORAGE_ACCOUNT_URLS=stalled_account,
    )  # fmt: skip
    requests_ = [scoring_request(stalled_blob_server, f"q{i}.csv", DataFormat.CSV) for i in range(4)]
    first = requests_[0].to_json()
    assert post(server.score_url, first).status_code == 202
    # Re-posting the same request reports its state: wait until the worker holds it.
    deadline = time.monotonic() + 30
    while post(server.score_url, first).json().get("duplicate_of") != "running":
        assert time.monotonic() < deadline, "the worker never picked up the first request"
        time.sleep(0.1)
    statuses = [202]
    for request in requests_[1:]:
        response = post(server.score_url, request.to_json())
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "7"
            assert "queue is full" in response.json()["message"]
    # One running (stuck on the stalled read), one queued, the rest refused.
    assert statuses.count(202) == 2 and statuses.count(429) == 2, statuses
    assert post(server.score_url, {"data": json.loads(frame(2, 1).to_json(orient="records"))}).status_code == 200
