"""Helpers for the scoring-server tests: input blobs in Azurite with SAS URLs, async requests, results."""

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
from tests.fixtures.azurite import DEV_ACCOUNT, DEV_KEY

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
