"""Talking to a scoring server as the function app does: input blobs with SAS URLs, async requests, results.

Shared by the scoring-server tests and the scoring benchmarks. :func:`submit` uploads a file and has it
accepted (202); :func:`result_of_request` waits for its one result on the client subscription's session.
"""

from __future__ import annotations

import base64
import gzip
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from azure.servicebus import ServiceBusClient
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from shared.contracts import AsyncScoringRequest, DataFormat, InferenceResult, ReplyTo
from tests.fixtures.azurite import DEV_ACCOUNT, DEV_KEY, Azurite

INPUT_CONTAINER = "input"
RESULT_TOPIC = "inference-results"
CLIENT_SUBSCRIPTION = "client"


def upload(connection_string: str, name: str, data: bytes) -> None:
    service = BlobServiceClient.from_connection_string(connection_string)
    container = service.get_container_client(INPUT_CONTAINER)
    if not container.exists():
        container.create_container()
    container.upload_blob(name, data, overwrite=True)


def sas_url(blob_endpoint: str, name: str, *, key: str = DEV_KEY, read: bool = True) -> str:
    sas = generate_blob_sas(
        account_name=DEV_ACCOUNT,
        container_name=INPUT_CONTAINER,
        blob_name=name,
        account_key=key,
        permission=BlobSasPermissions(read=read, list=not read),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{blob_endpoint}/{INPUT_CONTAINER}/{name}?{sas}"


def scoring_request(
    blob_url: str, input_name: str, fmt: DataFormat, *, compression: str | None = None, attempt: int = 1
) -> AsyncScoringRequest:
    return AsyncScoringRequest(
        request_id=uuid.uuid4().hex,
        blob_url=blob_url,
        reply=ReplyTo(topic=RESULT_TOPIC, session_id=f"test-{uuid.uuid4().hex[:12]}"),
        input_name=input_name,
        format=fmt,
        compression=compression,
        attempt=attempt,
    )


def post(score_url: str, body: bytes | str | dict[str, Any]) -> requests.Response:
    if isinstance(body, dict):
        return requests.post(score_url, json=body, timeout=60)
    return requests.post(score_url, data=body, headers={"Content-Type": "application/json"}, timeout=60)


def accepted(score_url: str, request: AsyncScoringRequest) -> AsyncScoringRequest:
    """POST ``request`` and check the server took it on (202 with the request's id); ``request`` again."""
    response = post(score_url, request.to_json())
    assert response.status_code == 202, response.text
    assert response.json() == {"request_id": request.request_id, "attempt": request.attempt, "status": "accepted"}
    return request


def submit(
    score_url: str,
    azurite: Azurite,
    blob: str,
    data: bytes,
    fmt: DataFormat,
    *,
    input_name: str | None = None,
    compression: str | None = None,
) -> AsyncScoringRequest:
    """Upload ``data`` as input blob ``blob`` and have the server accept an async request for it."""
    upload(azurite.connection_string, blob, data)
    request = scoring_request(sas_url(azurite.blob_endpoint, blob), input_name or blob, fmt, compression=compression)
    return accepted(score_url, request)


def receive_results(connection_string: str, session_id: str, *, count: int = 1, wait: float = 60) -> list[Any]:
    """Up to ``count`` result messages from the client subscription's session (completed), as received."""
    received: list[Any] = []
    with ServiceBusClient.from_connection_string(connection_string) as client:
        receiver = client.get_subscription_receiver(
            RESULT_TOPIC, CLIENT_SUBSCRIPTION, session_id=session_id, max_wait_time=wait
        )
        with receiver:
            while len(received) < count:
                batch = receiver.receive_messages(max_message_count=count - len(received), max_wait_time=wait)
                if not batch:
                    break
                for message in batch:
                    receiver.complete_message(message)
                    received.append(message)
    return received


def result_of(message: Any) -> InferenceResult:
    return InferenceResult.from_json(b"".join(message.body))


def result_of_request(connection_string: str, request: AsyncScoringRequest, *, wait: float = 60) -> InferenceResult:
    """The one result published for ``request`` (completed); fails when none or more than one arrives."""
    (message,) = receive_results(connection_string, request.reply.session_id, wait=wait)
    return result_of(message)


def output_bytes(result: InferenceResult) -> bytes:
    """The output file's bytes (inline or downloaded from the results blob), decompressed if gzip."""
    assert result.output is not None
    if result.output.inline_b64 is not None:
        data = result.output.inline_bytes()
    else:
        assert result.output.blob_url is not None
        response = requests.get(result.output.blob_url, timeout=60)
        response.raise_for_status()
        data = response.content
    return gzip.decompress(data) if result.output.compression == "gzip" else data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
