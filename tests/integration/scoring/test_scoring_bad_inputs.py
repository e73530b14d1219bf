"""Bad async inputs end as a failed InferenceResult with a stable code and a readable message, and the
server keeps serving. Limits of the session's test server: 4 MiB input, 32 MiB after decompression."""

from __future__ import annotations

import uuid

import pytest

from scoring.examples.churn.sample import sample_bytes
from shared.contracts import DataFormat, ErrorCode, InferenceResult, ResultStatus
from tests.fixtures.azurite import DEV_KEY, Azurite
from tests.fixtures.scoring import UNANSWERED_ACCOUNT, ScoringServer
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.support.scoring import (
    accepted,
    post,
    receive_results,
    result_of,
    result_of_request,
    sas_url,
    scoring_request,
    submit,
    upload,
)

pytestmark = pytest.mark.slow

WRONG_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="


def _score_ok(
    server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator, data: bytes, name: str
) -> InferenceResult:
    request = submit(server.score_url, azurite, f"ok/{name}", data, DataFormat.CSV, input_name=name)
    return result_of_request(servicebus.connection_string, request)


def _score(
    server: ScoringServer,
    azurite: Azurite,
    servicebus: ServiceBusEmulator,
    data: bytes | None,
    name: str,
    *,
    key: str | None = None,
    read: bool = True,
) -> InferenceResult:
    blob = f"bad-{uuid.uuid4().hex[:8]}/{name}"
    if data is not None:
        upload(azurite.connection_string, blob, data)
    url = sas_url(azurite.blob_endpoint, blob, key=key or DEV_KEY, read=read)
    fmt = DataFormat.JSONL if ".jsonl" in name else DataFormat.CSV
    request = accepted(
        server.score_url, scoring_request(url, name, fmt, compression="gzip" if name.endswith(".gz") else None)
    )
    (message,) = receive_results(servicebus.connection_string, request.reply.session_id)
    assert message.application_properties[b"status"] == b"failed"
    return result_of(message)


@pytest.mark.parametrize(
    ("kind", "name", "code", "words"),
    [
        ("empty", "empty.csv", ErrorCode.EMPTY_FILE, "empty"),
        ("empty", "empty.jsonl", ErrorCode.EMPTY_FILE, "empty"),
        ("header-only", "header.csv", ErrorCode.HEADER_ONLY, "no data rows"),
        ("header-only", "blank.jsonl", ErrorCode.EMPTY_FILE, "empty"),
        ("missing-column", "missing.csv", ErrorCode.MISSING_COLUMNS, "['Contract']"),
        ("missing-column", "missing.jsonl", ErrorCode.MISSING_COLUMNS, "['Contract']"),
        ("extra-column", "extra.csv", ErrorCode.UNEXPECTED_COLUMNS, "['Extra']"),
        ("extra-column", "extra.jsonl.gz", ErrorCode.UNEXPECTED_COLUMNS, "['Extra']"),
        ("duplicate-column", "dup.csv", ErrorCode.DUPLICATE_COLUMNS, "['tenure']"),
        ("duplicate-column", "dup.jsonl", ErrorCode.DUPLICATE_COLUMNS, "['tenure']"),
        ("wrong-types", "types.csv", ErrorCode.NO_VALID_ROWS, "tenure: 'many' is not a number"),
        ("wrong-types", "types.jsonl", ErrorCode.NO_VALID_ROWS, "tenure: 'many' is a str"),
        ("nan", "nan.csv", ErrorCode.NO_VALID_ROWS, "not a finite number"),
        ("nan", "nan.jsonl", ErrorCode.NO_VALID_ROWS, "not a finite number"),
        ("inf", "inf.csv.gz", ErrorCode.NO_VALID_ROWS, "not a finite number"),
        ("inf", "inf.jsonl", ErrorCode.NO_VALID_ROWS, "not a finite number"),
        ("undecodable", "latin.csv", ErrorCode.UNDECODABLE, "not UTF-8"),
        ("undecodable", "latin.jsonl", ErrorCode.UNDECODABLE, "not UTF-8"),
        ("not-tabular", "image.csv", ErrorCode.UNDECODABLE, "not UTF-8"),
        ("not-tabular", "image.csv.gz", ErrorCode.UNDECODABLE, "not UTF-8"),
        ("gzip-bomb", "bomb.csv.gz", ErrorCode.TOO_LARGE, "after decompression"),
    ],
)
def test_bad_file_fails_with_a_stable_code(
    scoring_server: ScoringServer,
    azurite: Azurite,
    servicebus: ServiceBusEmulator,
    kind: str,
    name: str,
    code: ErrorCode,
    words: str,
) -> None:
    fmt = "jsonl" if ".jsonl" in name else "csv"
    compress = name.endswith(".gz") and kind != "gzip-bomb"
    data = sample_bytes(50, fmt, seed=31, bad=kind, compress=compress)
    if kind == "not-tabular" and name.endswith(".gz"):
        data = data[:10] + b"garbage" + data[17:]  # a corrupt gzip stream
        code, words = ErrorCode.UNDECODABLE, "gzip"
    result = _score(scoring_server, azurite, servicebus, data, name)
    assert result.status == ResultStatus.FAILED
    assert result.error is not None and result.error.code == code, result.error
    assert words in result.error.message
    assert result.output is None and result.rows_scored == 0


def test_no_valid_rows_reports_the_first_row_errors(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    result = _score(scoring_server, azurite, servicebus, sample_bytes(30, "csv", bad="wrong-types"), "types.csv")
    assert result.rows_failed == 30
    assert [e.row for e in result.row_errors] == list(range(1, 21))


def test_missing_blob(scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator) -> None:
    result = _score(scoring_server, azurite, servicebus, None, "nowhere.csv")
    assert result.error is not None and result.error.code == ErrorCode.BLOB_NOT_FOUND


@pytest.mark.parametrize("sas", ["wrong-key", "no-read-permission"])
def test_refused_blob(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator, sas: str
) -> None:
    data = sample_bytes(5, "csv")
    if sas == "wrong-key":
        result = _score(scoring_server, azurite, servicebus, data, "locked.csv", key=WRONG_KEY)
    else:
        result = _score(scoring_server, azurite, servicebus, data, "locked.csv", read=False)
    assert result.error is not None and result.error.code == ErrorCode.BLOB_FORBIDDEN
    assert "sig=" not in result.error.message


def test_input_over_the_size_limit(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = sample_bytes(40_000, "csv", seed=32)
    assert len(data) > 4 * 1024 * 1024
    result = _score(scoring_server, azurite, servicebus, data, "huge.csv")
    assert result.error is not None and result.error.code == ErrorCode.TOO_LARGE
    assert "limit is 4194304 bytes" in result.error.message


def test_server_still_serves_after_bad_inputs(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    response = post(scoring_server.score_url, {"data": [{"gender": "x"}]})
    assert response.status_code == 400
    data = sample_bytes(20, "csv", bad="some-bad-rows")
    assert _score_ok(scoring_server, azurite, servicebus, data, "after.csv").rows_scored == 17
    log = scoring_server.log_text()
    assert "Traceback" not in log
    assert "scoring service ready" in log and "rows scored" in log  # the service's own lines are there
    # Nothing secret: no SAS signature, account key or Service Bus key in the log.
    assert "sig=" not in log and DEV_KEY not in log and "SAS_KEY_VALUE" not in log and "AccountKey" not in log


def test_unreachable_storage(unanswered_account_server: ScoringServer, servicebus: ServiceBusEmulator) -> None:
    # An allowed account whose storage does not answer (nothing listens on its port).
    closed = f"{UNANSWERED_ACCOUNT}/input/gone.csv?sv=2024&sig=abc"
    request = accepted(unanswered_account_server.score_url, scoring_request(closed, "gone.csv", DataFormat.CSV))
    result = result_of_request(servicebus.connection_string, request, wait=120)
    assert result.error is not None and result.error.code == ErrorCode.INPUT_UNAVAILABLE
    assert "did not answer" in result.error.message and "sig=" not in result.error.message
