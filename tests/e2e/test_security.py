"""Security properties of the running stack: read-only short-lived SAS, no secrets in logs, keys enforced.

* The SAS URL the function app hands to the scoring endpoint: ``score_request`` (the use case, with the app's
  real storage adapter and settings) runs here against the stack, its HTTP calls recorded on their way to the
  real scoring server. The body must carry a blob-scoped, read-only SAS (``sr=b``, ``sp=r``) expiring within
  ``SAS_TTL_MINUTES``, and nothing else secret; Azurite must refuse a write with it.
* The Service Bus emulator refuses a wrong key; the status endpoint refuses a request without the function key.
* No key, SAS signature or connection string is in any log of the session's stack (this module runs after
  the other e2e modules, so the logs cover their runs too).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusAuthenticationError, ServiceBusAuthorizationError
from azure.storage.blob import BlobClient, BlobServiceClient

from devstack.functions_host.settings import load_local_settings
from devstack.stack import DEV_KEY, REPO, SB_KEY
from scoring.examples.churn.data import generate
from shared import score
from shared.contracts import AsyncScoringRequest, DataFormat, InferenceRequest, derive_request_id, utc_now_iso
from shared.endpoint import HttpScoringEndpoint
from shared.ledger import Ledger
from shared.ports import EndpointReply
from shared.routes import Route
from shared.settings import Settings, load_endpoint, load_settings
from shared.storage import AzureBlobStore
from tests.fixtures.stack import StackEndpoints
from tests.support.flow import OutputWatcher, secrets_in_logs

pytestmark = pytest.mark.slow


def app_settings(stack: StackEndpoints) -> tuple[dict[str, str], Settings]:
    """The settings the stack's functions host runs with: local settings, then the stack's own values."""
    env = {**load_local_settings(REPO), **stack.settings.function_app_settings()}
    return env, load_settings(env)


@dataclass
class RecordingEndpoint:
    """The app's HTTP endpoint adapter, keeping a copy of each body it sends to the real scoring server."""

    inner: HttpScoringEndpoint
    bodies: list[bytes] = field(default_factory=list)

    def post(self, body: bytes) -> EndpointReply:
        self.bodies.append(body)
        return self.inner.post(body)


def test_sas_sent_to_the_scoring_server_is_read_only_and_short_lived(
    stack: StackEndpoints, blobs: BlobServiceClient
) -> None:
    env, settings = app_settings(stack)
    name = f"security-{uuid.uuid4().hex[:8]}/customers.csv"
    etag = blobs.get_blob_client("input", name).upload_blob(generate(8, seed=5, label=False).to_csv(index=False))[
        "etag"
    ]
    store = AzureBlobStore(settings.data_storage)
    route: Route = settings.routes[0]
    request = InferenceRequest(
        request_id=derive_request_id("input", name, etag),
        container="input",
        blob_name=name,
        blob_url=store.url("input", name),
        etag=etag.strip('"'),
        size=0,
        format=DataFormat.CSV,
        compression=None,
        session_id=f"security-{uuid.uuid4().hex[:8]}",
        model=route.model,
        submitted_at=utc_now_iso(),
    )
    endpoint = RecordingEndpoint(HttpScoringEndpoint(load_endpoint(env, route.model)))
    before = datetime.now(UTC)
    outcome = score.score_request(
        score.Delivery(body=request.to_json(), message_id=request.request_id, delivery_count=1, scoring_retry=0),
        route=route,
        settings=settings,
        blobs=store,
        bus=_NoBus(),
        endpoint=endpoint,
        ledger=Ledger(store, settings.ledger_container),
        now=before,
    )
    assert outcome == score.ScoreOutcome.ACCEPTED

    assert len(endpoint.bodies) == 1
    body = endpoint.bodies[0]
    sent = AsyncScoringRequest.from_json(body)
    query = parse_qs(urlsplit(sent.blob_url).query)
    assert query["sp"] == ["r"], query  # read only
    assert query["sr"] == ["b"], query  # this one blob
    expiry = datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
    assert before < expiry <= datetime.now(UTC) + timedelta(minutes=settings.sas_ttl_minutes, seconds=1)
    # Nothing secret besides the SAS itself travels in the body.
    text = body.decode()
    for secret in (DEV_KEY, SB_KEY, "AccountKey=", "SharedAccessKey=", "Endpoint=sb://"):
        assert secret not in text
    assert set(json.loads(body)) == {"schema", "version", *AsyncScoringRequest.__dataclass_fields__}
    assert env.get("SCORING_KEY", "") not in text or not env.get("SCORING_KEY")

    # Azurite enforces it: the SAS reads this blob, but cannot write it or read another one.
    assert BlobClient.from_blob_url(sent.blob_url).download_blob().readall()
    with pytest.raises(HttpResponseError) as refused:
        BlobClient.from_blob_url(sent.blob_url).upload_blob(b"overwritten", overwrite=True)
    assert refused.value.status_code == 403
    other = sent.blob_url.replace("/customers.csv?", "/other.csv?")
    with pytest.raises(HttpResponseError) as foreign:
        BlobClient.from_blob_url(other).download_blob().readall()
    assert foreign.value.status_code in (403, 404)

    # The real scoring server did the work with that SAS alone: the stack's writer stores the output.
    watcher = OutputWatcher(blobs.get_container_client("output"), [name], [name.split("/")[0]])
    assert not watcher.wait([name], timeout=120, interval=0.5)
    assert name in watcher.poll().outputs


class _NoBus:
    """score_request publishes only when the endpoint is unavailable; here that would be a failure."""

    def publish(self, topic: str, message: object) -> None:
        raise AssertionError(f"unexpected publish to {topic}")

    def schedule(self, topic: str, message: object, at: datetime) -> None:
        raise AssertionError(f"unexpected schedule on {topic}")


def test_emulator_refuses_a_wrong_key(stack: StackEndpoints) -> None:
    wrong = stack.servicebus_connection_string.replace(f"SharedAccessKey={SB_KEY}", "SharedAccessKey=not-the-key")
    assert wrong != stack.servicebus_connection_string
    with (
        ServiceBusClient.from_connection_string(wrong, retry_total=0) as client,
        pytest.raises((ServiceBusAuthenticationError, ServiceBusAuthorizationError)),
        client.get_topic_sender("inference-requests") as sender,
    ):
        sender.send_messages(ServiceBusMessage(b"{}"))


def test_status_endpoint_needs_the_function_key(stack: StackEndpoints) -> None:
    url = f"{stack.functions_url}/api/requests/{'0' * 32}"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"x-functions-key": "wrong"}, timeout=10).status_code == 401
    assert stack.functions_key
    assert requests.get(url, headers={"x-functions-key": stack.functions_key}, timeout=10).status_code == 404


def logs_settled(log_dir: Path, quiet_for: float = 0.5, timeout: float = 15.0) -> None:
    """Waits until no log file has grown for ``quiet_for`` seconds (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    sizes: dict[Path, int] = {}
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        now = {path: path.stat().st_size for path in log_dir.rglob("*.log")}
        if now != sizes:
            sizes, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_for:
            return
        time.sleep(0.1)


def test_no_secret_in_any_log(stack: StackEndpoints) -> None:
    env, _ = app_settings(stack)
    logs_settled(Path(stack.log_dir))  # what the earlier tests caused is in the logs
    found = secrets_in_logs(stack.log_dir, extra=[env.get("SCORING_KEY", "")])
    assert not found, "\n".join(found)
    assert any(Path(stack.log_dir).glob("*.log")), os.listdir(stack.log_dir)
