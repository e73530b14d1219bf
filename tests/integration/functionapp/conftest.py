"""Fixtures for the function app's integration tests: settings pointing at Azurite and the Service Bus
emulator (fresh containers per test), a stand-in for the endpoint's HTTP error contract, and helpers
that hand functions the same `azure.functions` objects the worker builds."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.storage.blob import BlobServiceClient

from devstack.ports import LOOPBACK, free_port
from shared.settings import get_endpoint, get_settings
from tests.fixtures.servicebus import TEST_ROUTES

BASE_ENV = {
    "REQUEST_TOPIC": "inference-requests",
    "RESULT_TOPIC": "inference-results",
    "WRITER_SUBSCRIPTION": "writer",
    "MODEL_ROUTES_FILE": str(TEST_ROUTES),  # default on scoring, churn-v2 on scoring-churn-v2
    "SCORING_KEY": "test-key",
    "SCORING_DEPLOYMENT__CHURN_V2": "blue",
    "SCORING_RETRY_BASE_SECONDS": "0.5",
    "SCORING_RETRY_MAX_SECONDS": "2",
    "SCORING_CONNECT_TIMEOUT_SECONDS": "2",
    "SCORING_READ_TIMEOUT_SECONDS": "5",
    "MAX_INPUT_BYTES": "1000000",
}


@dataclass
class AppEnv:
    env: dict[str, str]
    blob_service: BlobServiceClient
    bus_connection: str

    @property
    def input(self) -> str:
        return self.env["INPUT_CONTAINER"]

    @property
    def output(self) -> str:
        return self.env["OUTPUT_CONTAINER"]

    @property
    def ledger(self) -> str:
        return self.env["LEDGER_CONTAINER"]

    def upload(self, name: str, data: bytes, metadata: dict[str, str] | None = None) -> str:
        blob = self.blob_service.get_blob_client(self.input, name)
        return str(blob.upload_blob(data, overwrite=True, metadata=metadata)["etag"])

    def read(self, container: str, name: str) -> bytes:
        return bytes(self.blob_service.get_blob_client(container, name).download_blob().readall())

    def names(self, container: str) -> list[str]:
        return sorted(b.name for b in self.blob_service.get_container_client(container).list_blobs())

    def ledger_record(self, request_id: str) -> dict[str, Any]:
        return dict(json.loads(self.read(self.ledger, f"requests/{request_id}.json")))

    def receive(
        self,
        subscription: str,
        match: Callable[[ServiceBusReceivedMessage], bool],
        *,
        timeout: float = 10.0,
        dead_letter: bool = False,
        settle: bool = True,
    ) -> ServiceBusReceivedMessage | None:
        """First matching message on a request-topic subscription (others met on the way are completed)."""
        deadline = time.monotonic() + timeout
        sub_queue = ServiceBusSubQueue.DEAD_LETTER if dead_letter else None
        with (
            ServiceBusClient.from_connection_string(self.bus_connection) as client,
            client.get_subscription_receiver("inference-requests", subscription, sub_queue=sub_queue) as receiver,
        ):
            while time.monotonic() < deadline:
                for message in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                    if match(message):
                        if settle:
                            receiver.complete_message(message)
                        return message
                    receiver.complete_message(message)
        return None


@pytest.fixture
def fa_env(azurite: Any, servicebus: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppEnv]:
    suffix = uuid.uuid4().hex[:10]
    env = {
        **BASE_ENV,
        "DataStorage": azurite.connection_string,
        "ServiceBus": servicebus.connection_string,
        "INPUT_CONTAINER": f"input-{suffix}",
        "OUTPUT_CONTAINER": f"output-{suffix}",
        "LEDGER_CONTAINER": f"ledger-{suffix}",
        "SCORING_URI": f"http://{LOOPBACK}:{free_port()}/score",
    }
    for key in ("DataStorage__blobServiceUri", "ServiceBus__fullyQualifiedNamespace"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for key in ("INPUT_CONTAINER", "OUTPUT_CONTAINER", "LEDGER_CONTAINER"):
        service.create_container(env[key])
    get_settings.cache_clear()
    get_endpoint.cache_clear()
    yield AppEnv(env=env, blob_service=service, bus_connection=servicebus.connection_string)
    get_settings.cache_clear()
    get_endpoint.cache_clear()


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class EndpointStandIn:
    """Our own test double of the scoring route's HTTP error contract (429/503/400), on a loopback port."""

    replies: list[tuple[int, dict[str, str], bytes]]
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    @property
    def uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/score"


@pytest.fixture
def endpoint_stand_in() -> Iterator[Callable[..., EndpointStandIn]]:
    servers: list[ThreadingHTTPServer] = []

    def start(*replies: tuple[int, dict[str, str], bytes]) -> EndpointStandIn:
        stand_in = EndpointStandIn(replies=list(replies))

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stand_in.requests.append(Recorded(self.path, dict(self.headers.items()), body))
                status, headers, payload = (
                    stand_in.replies[0] if len(stand_in.replies) == 1 else stand_in.replies.pop(0)
                )
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        stand_in.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return stand_in

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
