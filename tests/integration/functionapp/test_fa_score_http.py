"""score_request against the Service Bus emulator and a loopback stand-in for the endpoint's error contract:
throttling is rescheduled (never dead-lettered), a permanent 400 ends as the file's error record and the message
completes, an unreachable endpoint is retried later."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import requests

from shared.contracts import (
    Admission,
    AsyncScoringBatchReply,
    AsyncScoringRequest,
    ErrorInfo,
    FileAdmission,
    InferenceResult,
    ResultStatus,
    derive_request_id,
)
from shared.endpoint import HttpScoringEndpoint
from shared.ledger import Handover
from shared.settings import EndpointSettings
from shared.triggers.write_result import write_result

from .conftest import AppEnv, EndpointStandIn
from .fa_support import indexed_function, run_like_host, set_env
from .test_fa_submit_write import result_message, trigger

V2 = "scoring-churn-v2"


def v2_function() -> Callable[..., None]:
    return indexed_function("score_request_churn_v2")  # a route of fa_env's MODEL_ROUTES_FILE


@pytest.mark.slow
def test_throttling_reschedules_then_a_permanent_rejection_becomes_the_error_record(
    fa_env: AppEnv, monkeypatch: pytest.MonkeyPatch, endpoint_stand_in: Callable[..., EndpointStandIn]
) -> None:
    stand_in = endpoint_stand_in(
        (429, {"Retry-After": "2"}, b'{"error": "too many requests"}'),
        (503, {}, b"unavailable"),
        (400, {}, json.dumps({"error": {"code": "missing_columns", "message": "no tenure"}}).encode()),
    )
    set_env(monkeypatch, SCORING_URI__CHURN_V2=stand_in.uri)
    etag = fa_env.upload("churn-v2/t.csv", b"a,b\n1,2\n", {"session_id": "sess-t"})
    trigger(fa_env, "churn-v2/t.csv")
    rid = derive_request_id(fa_env.input, "churn-v2/t.csv", etag)
    conn = fa_env.bus_connection
    v2 = v2_function()

    before = datetime.now(UTC)
    message, error = run_like_host(conn, V2, lambda m: m.message_id == rid, v2)
    assert message is not None and error is None  # 429: completed normally
    sent = AsyncScoringRequest.from_json(stand_in.requests[0].body)
    headers = {k.lower(): v for k, v in stand_in.requests[0].headers.items()}
    assert headers["authorization"] == "Bearer test-key" and headers["azureml-model-deployment"] == "blue"
    assert (sent.request_id, sent.model, sent.reply.session_id) == (rid, "churn-v2", "sess-t")
    assert requests.get(sent.blob_url, timeout=10).content == b"a,b\n1,2\n"  # the SAS URL reads the input

    copy, error = run_like_host(conn, V2, lambda m: m.message_id == f"{rid}:1:retry1", v2)
    assert copy is not None and error is None, "the throttled request was not rescheduled"
    assert copy.scheduled_enqueue_time_utc is not None
    assert (copy.scheduled_enqueue_time_utc - before).total_seconds() >= 1.9  # Retry-After: 2 honoured
    assert copy.session_id == "sess-t" and copy.application_properties is not None
    assert copy.application_properties[b"scoring_retry"] == 1
    assert fa_env.ledger_record(rid)["state"] == "submitted"

    # 503 without Retry-After was the second answer: a second copy follows; its delivery meets the 400.
    message, error = run_like_host(conn, V2, lambda m: m.message_id == f"{rid}:1:retry2", v2)
    assert message is not None and error is None  # recorded and completed: nothing is left to retry
    assert len(stand_in.requests) == 3
    record = fa_env.ledger_record(rid)
    assert (record["state"], record["error_code"]) == ("failed", "missing_columns")
    document = json.loads(fa_env.read(fa_env.output, "errors/churn-v2/t.csv.error.json"))
    assert document["error"] == {"code": "missing_columns", "message": "no tenure"}
    assert fa_env.receive(V2, lambda m: m.message_id == f"{rid}:1:retry2", timeout=2) is None
    assert fa_env.receive(V2, lambda m: True, timeout=1, dead_letter=True) is None


def test_unreachable_endpoint_is_retried_later(fa_env: AppEnv) -> None:
    etag = fa_env.upload("u.csv", b"a\n1\n")
    trigger(fa_env, "u.csv")
    rid = derive_request_id(fa_env.input, "u.csv", etag)
    message, error = run_like_host(fa_env.bus_connection, "scoring", lambda m: m.message_id == rid,
                                   indexed_function("score_request"))  # fmt: skip
    assert message is not None and error is None
    copy, _ = run_like_host(fa_env.bus_connection, "scoring", lambda m: m.message_id == f"{rid}:1:retry1",
                            lambda msg: None)  # fmt: skip
    assert copy is not None
    assert fa_env.ledger_record(rid)["state"] == "submitted"


UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/scoring-uri/)"


@pytest.mark.parametrize("uri", [None, UNRESOLVED], ids=["unset", "unresolved-key-vault-reference"])
def test_an_endpoint_not_deployed_yet_breaks_nothing_and_is_retried_until_it_exists(
    fa_env: AppEnv,
    monkeypatch: pytest.MonkeyPatch,
    endpoint_stand_in: Callable[..., EndpointStandIn],
    uri: str | None,
) -> None:
    """Between provisioning and the endpoint's deployment the endpoint settings are unset or hold the raw Key
    Vault reference: the blob trigger, the writer and the status route work; score_request backs off."""
    set_env(monkeypatch, SCORING_URI=uri, SCORING_KEY=uri)
    etag = fa_env.upload("early.csv", b"a\n1\n")
    trigger(fa_env, "early.csv")  # the blob trigger does not need the endpoint
    rid = derive_request_id(fa_env.input, "early.csv", etag)
    write_result.build().get_user_function()([result_message(InferenceResult(
        request_id="5" * 32, status=ResultStatus.FAILED, input_name="other.csv", model="churn",
        error=ErrorInfo("no_valid_rows", "no row could be scored")))])  # fmt: skip
    assert fa_env.ledger_record("5" * 32)["state"] == "failed"  # nor does the writer

    score = indexed_function("score_request")
    message, error = run_like_host(fa_env.bus_connection, "scoring", lambda m: m.message_id == rid, score)
    assert message is not None and error is None, "an endpoint that does not exist yet must not fail the message"
    assert fa_env.ledger_record(rid)["state"] == "submitted"

    stand_in = endpoint_stand_in((202, {}, b'{"status": "accepted"}'))
    set_env(monkeypatch, SCORING_URI=stand_in.uri, SCORING_KEY="deployed-key")  # what a restart with them sees
    copy, error = run_like_host(fa_env.bus_connection, "scoring", lambda m: m.message_id == f"{rid}:1:retry1", score)
    assert copy is not None and error is None, "the request was not rescheduled while the endpoint was missing"
    [sent] = [AsyncScoringRequest.from_json(r.body) for r in stand_in.requests]
    assert sent.request_id == rid
    # A small file: "accepted" goes to the writer with the request instead of into the ledger now.
    handover = Handover.from_context(sent.context, rid, 1)
    assert handover is not None and handover.record.state == "accepted" and handover.record.scoring_retries == 1
    assert fa_env.ledger_record(rid)["state"] == "submitted"


def test_an_accepted_batch_answer_is_read_whole_and_an_error_body_cut_short(
    endpoint_stand_in: Callable[..., EndpointStandIn],
) -> None:
    admissions = tuple(FileAdmission(f"{i:032x}", 1, Admission.ACCEPTED) for i in range(60))
    answer = AsyncScoringBatchReply(admissions).to_json()
    assert len(answer) > 4000
    stand_in = endpoint_stand_in((202, {}, answer), (400, {}, b"x" * 5000))
    endpoint = HttpScoringEndpoint(
        EndpointSettings(model="default", uri=stand_in.uri, key=None, deployment=None,
                         connect_timeout_seconds=2, read_timeout_seconds=5)
    )  # fmt: skip
    accepted = endpoint.post(b"{}")
    assert accepted.status == 202 and AsyncScoringBatchReply.from_json(accepted.body).admissions == admissions
    refused = endpoint.post(b"{}")
    assert refused.status == 400 and len(refused.body) == 2000
