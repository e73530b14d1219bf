"""Several small files in one async request, against the real azmlinfsrv, Azurite and the Service Bus emulator:
one POST, one queued job, and each file still gets its own result on its own session (a bad file its failed
result); a file the deployment refuses is answered ``rejected`` while the others go ahead; a full queue refuses
the whole batch with 429 and queues none of it."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from scoring.examples.churn.sample import sample_bytes
from shared.contracts import (
    Admission,
    AsyncScoringBatch,
    AsyncScoringBatchReply,
    DataFormat,
    ErrorCode,
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
    sas_url,
    scoring_request,
    upload,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


def test_a_batch_is_one_request_and_each_file_gets_its_own_result(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    prefix = uuid.uuid4().hex[:8]
    files = {f"good{i}.csv": sample_bytes(100, "csv", seed=40 + i) for i in range(3)}
    files["bad.csv"] = b"gender,tenure\nMale,1\n"  # most of the model's columns are missing
    requests_ = []
    for name, data in files.items():
        upload(azurite.connection_string, f"{prefix}/{name}", data)
        request = scoring_request(sas_url(azurite.blob_endpoint, f"{prefix}/{name}"), name, DataFormat.CSV)
        requests_.append(replace(request, context=json.dumps({"caller": name, "é": "ü" * 200})))
    refused = scoring_request(requests_[0].blob_url, "../escape.csv", DataFormat.CSV)
    batch = AsyncScoringBatch(model="default", requests=(*requests_, requests_[0], refused))

    response = post(scoring_server.score_url, batch.to_json())
    assert response.status_code == 202, response.text
    admissions = AsyncScoringBatchReply.from_json(response.content).admissions
    assert [a.status for a in admissions] == [Admission.ACCEPTED] * 4 + [Admission.DUPLICATE, Admission.REJECTED]
    assert [a.request_id for a in admissions] == [r.request_id for r in batch.requests]
    assert admissions[-1].code == ErrorCode.INVALID_NAME and "input_name" in (admissions[-1].message or "")

    connection = servicebus.connection_string
    outputs = {}
    for request in requests_[:3]:
        (message,) = receive_results(connection, request.reply.session_id)
        result = result_of(message)
        assert message.message_id == f"{request.request_id}:result:1"
        assert result.status == ResultStatus.SUCCEEDED, result.error
        assert (result.request_id, result.input_name, result.rows_scored) == (
            request.request_id, request.input_name, 100)  # fmt: skip
        assert result.context == request.context  # returned unchanged
        outputs[request.input_name] = output_bytes(result)
        lines = outputs[request.input_name].decode().splitlines()
        assert lines[0].endswith(",prediction,probability") and len(lines) == 101
    (message,) = receive_results(connection, requests_[3].reply.session_id)
    failed = result_of(message)
    assert failed.status == ResultStatus.FAILED and failed.error is not None
    assert (failed.input_name, failed.error.code) == ("bad.csv", ErrorCode.MISSING_COLUMNS)
    assert failed.context == requests_[3].context

    # The file named twice was scored once; the refused one gets no result (the caller records its error).
    assert receive_results(connection, requests_[0].reply.session_id, count=1, wait=3) == []
    assert receive_results(connection, refused.reply.session_id, count=1, wait=1) == []

    # A file scored in a batch has the same output as when sent on its own.
    alone = scoring_request(requests_[1].blob_url, "good1.csv", DataFormat.CSV)
    assert post(scoring_server.score_url, alone.to_json()).status_code == 202
    (single,) = receive_results(connection, alone.reply.session_id)
    assert output_bytes(result_of(single)) == outputs["good1.csv"]


def test_a_batch_meeting_a_full_queue_is_refused_whole(
    scoring_server_factory: ScoringServerFactory, stalled_blob_server: str, azurite: Azurite,
    servicebus: ServiceBusEmulator,
) -> None:  # fmt: skip
    stalled_account = stalled_blob_server.split("/input/")[0]
    server = scoring_server_factory(
        SCORING_QUEUE_SIZE="1", SCORING_WORKERS="1", SCORING_RETRY_AFTER_SECONDS="9",
        INPUT_STORAGE_ACCOUNT_URLS=f"{stalled_account},{azurite.blob_endpoint}",
    )  # fmt: skip
    stuck = scoring_request(stalled_blob_server, "stuck.csv", DataFormat.CSV)
    assert post(server.score_url, stuck.to_json()).status_code == 202
    waiting = scoring_request(stalled_blob_server, "waiting.csv", DataFormat.CSV)

    def running() -> bool:  # a request posted again while it is being scored is answered as its duplicate
        return bool(post(server.score_url, stuck.to_json()).json().get("duplicate_of") == "running")

    wait_until(running, 30, "the worker to pick up the first request", interval=0.02)
    assert post(server.score_url, waiting.to_json()).status_code == 202  # the queue's one place

    prefix = uuid.uuid4().hex[:8]
    requests_ = []
    for i in range(3):
        upload(azurite.connection_string, f"{prefix}/f{i}.csv", sample_bytes(20, "csv", seed=50 + i))
        requests_.append(scoring_request(sas_url(azurite.blob_endpoint, f"{prefix}/f{i}.csv"), f"f{i}.csv",
                                         DataFormat.CSV))  # fmt: skip
    batch = AsyncScoringBatch(model="default", requests=tuple(requests_)).to_json()
    for _ in range(2):  # refused again: none of its files was recorded as queued by the first refusal
        response = post(server.score_url, batch)
        assert response.status_code == 429, response.text
        assert response.headers["Retry-After"] == "9" and "queue is full" in response.json()["message"]
    for request in requests_:
        assert receive_results(servicebus.connection_string, request.reply.session_id, count=1, wait=1) == []
