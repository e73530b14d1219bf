"""The whole function chain against the real scoring server (azmlinfsrv with the churn model), Azurite and the
Service Bus emulator: submit_blob -> score_request -> (endpoint publishes the result) -> write_result."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import azure.functions as func
import pytest
from azure.servicebus import ServiceBusClient

from scoring.examples.churn.sample import sample_bytes
from shared.contracts import InferenceResult, derive_request_id
from shared.settings import BATCH_MAX_FILE_BYTES
from shared.triggers.request_status import request_status
from shared.triggers.write_result import write_result

from .conftest import AppEnv
from .fa_support import function_message, indexed_function, run_like_host, set_env
from .test_fa_submit_write import trigger

pytestmark = pytest.mark.slow


def score_and_write(env: AppEnv, name: str, data: bytes, session: str) -> tuple[str, InferenceResult]:
    etag = env.upload(name, data, {"session_id": session})
    trigger(env, name)
    rid = derive_request_id(env.input, name, etag)
    message, error = run_like_host(env.bus_connection, "scoring", lambda m: m.message_id == rid,
                                   indexed_function("score_request"))  # fmt: skip
    assert message is not None and error is None
    # A small file's "accepted" is recorded with its result (the writer below); a larger file's by score_request.
    assert env.ledger_record(rid)["state"] == ("submitted" if len(data) <= BATCH_MAX_FILE_BYTES else "accepted")
    with (
        ServiceBusClient.from_connection_string(env.bus_connection) as client,
        client.get_subscription_receiver("inference-results", "writer", session_id=session) as receiver,
    ):
        received = receiver.receive_messages(max_message_count=1, max_wait_time=60)
        assert received, "no result arrived on the writer subscription"
        write_result.build().get_user_function()([function_message(received[0])])
        receiver.complete_message(received[0])
    return rid, InferenceResult.from_json(b"".join(received[0].body))


def status(rid: str) -> dict[str, Any]:
    req = func.HttpRequest(method="GET", url=f"http://localhost/api/requests/{rid}", body=b"",
                           route_params={"request_id": rid})  # fmt: skip
    response = request_status.build().get_user_function()(req)
    assert response.status_code == 200
    return dict(json.loads(response.get_body()))


def test_csv_is_scored_and_written(fa_env: AppEnv, scoring_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, SCORING_URI=scoring_server.score_url)
    data = sample_bytes(200, "csv", seed=3)
    rid, result = score_and_write(fa_env, "happy/customers.csv", data, "happy-" + fa_env.input)
    assert result.status == "succeeded" and result.rows_scored == 200
    rows = list(csv.DictReader(io.StringIO(fa_env.read(fa_env.output, "happy/customers.csv").decode())))
    assert len(rows) == 200 and {"prediction", "probability"} <= set(rows[0])
    assert all(0.0 <= float(r["probability"]) <= 1.0 for r in rows)
    view = status(rid)
    assert view["state"] == "succeeded" and view["output_location"] == f"{fa_env.output}/happy/customers.csv"
    assert view["rows_scored"] == 200 and view["completed_at"] and view["accepted_at"]


def test_bad_rows_end_in_an_error_record(fa_env: AppEnv, scoring_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, SCORING_URI=scoring_server.score_url)
    data = sample_bytes(20, "csv", seed=4, bad="missing-column")
    rid, result = score_and_write(fa_env, "bad.csv", data, "bad-" + fa_env.input)
    assert result.status == "failed" and result.error is not None
    document = json.loads(fa_env.read(fa_env.output, "errors/bad.csv.error.json"))
    assert document["error"]["code"] == result.error.code == status(rid)["error_code"]
    assert status(rid)["state"] == "failed"


def test_large_output_is_copied_from_the_results_container(
    fa_env: AppEnv, scoring_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, SCORING_URI=scoring_server.score_url, MAX_INPUT_BYTES=str(4 * 1024 * 1024))
    data = sample_bytes(3000, "jsonl", seed=5)
    rid, result = score_and_write(fa_env, "large.jsonl", data, "large-" + fa_env.input)
    assert result.output is not None and result.output.blob_url is not None, "expected a staged (non-inline) output"
    written = fa_env.read(fa_env.output, "large.jsonl")
    assert len(written) == result.output.size and len(written.splitlines()) == 3000
    assert {"prediction", "probability"} <= set(json.loads(written.splitlines()[0]))
    assert status(rid)["state"] == "succeeded"
    # The staged output is deleted once the output is written (shared/write.py).
    assert [n for n in fa_env.names("results") if n.startswith(f"{rid}/")] == []
