"""Adapter details that need no service: Retry-After parsing, identity credential choice, client construction."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared import storage
from shared.bus import _sender, new_client
from shared.config import Connection
from shared.endpoint import HttpScoringEndpoint, parse_retry_after
from shared.settings import EndpointSettings
from shared.storage import AzureBlobStore, blob_client, credential_for, environment_applies, service_client


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("-5") == 0.0
    for bad in (None, "", "soon"):
        assert parse_retry_after(bad) is None


def test_identity_credentials() -> None:
    user_assigned = Connection("DataStorage", service_uri="https://a.blob.core.windows.net", client_id="abc")
    assert isinstance(credential_for(user_assigned), ManagedIdentityCredential)
    by_default = Connection("ServiceBus", fully_qualified_namespace="ns.servicebus.windows.net")
    assert isinstance(credential_for(by_default), DefaultAzureCredential)


def test_identity_blob_client_uses_the_service_uri() -> None:
    store = AzureBlobStore(Connection("DataStorage", service_uri="https://acct.blob.core.windows.net", client_id="abc"))
    assert store.url("input", "d/a b.csv") == "https://acct.blob.core.windows.net/input/d/a%20b.csv"


def test_blob_clients_are_per_thread_and_reused_within_a_thread() -> None:
    import threading

    conn = Connection("DataStorage", connection_string="UseDevelopmentStorage=true")
    mine = service_client(conn)
    assert service_client(conn) is mine
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(service_client(conn)))
    thread.start()
    thread.join()
    assert other[0] is not mine


def test_a_finished_threads_client_serves_the_next_new_thread_never_two_at_once() -> None:
    conn = Connection("DataStorage", connection_string="UseDevelopmentStorage=true;x=handed-back")

    def clients_of_concurrent_threads(count: int) -> set[int]:
        together = threading.Barrier(count)  # all threads hold their client at the same time

        def use(_: int) -> int:
            client = service_client(conn)
            together.wait(timeout=10)
            return id(client)

        with ThreadPoolExecutor(max_workers=count) as pool:
            ids = list(pool.map(use, range(count)))
        assert len(set(ids)) == count
        return set(ids)

    first = clients_of_concurrent_threads(3)
    assert clients_of_concurrent_threads(3) == first  # the pool's threads ended; new ones took their clients
    assert clients_of_concurrent_threads(4) > first


def test_blob_clients_are_kept_per_thread_for_the_most_recent_blobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "_BLOB_CLIENTS_PER_THREAD", 2)
    monkeypatch.setattr(storage._local, "blobs", OrderedDict(), raising=False)  # this thread's, as if new
    conn = Connection("DataStorage", connection_string="UseDevelopmentStorage=true")
    first = blob_client(conn, "input", "a.csv")
    assert blob_client(conn, "input", "a.csv") is first
    assert first.blob_name == "a.csv" and first.container_name == "input"
    output = blob_client(conn, "output", "a.csv")
    assert output is not first
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(blob_client(conn, "input", "a.csv")))
    thread.start()
    thread.join()
    assert other[0] is not first
    assert blob_client(conn, "input", "a.csv") is first
    blob_client(conn, "input", "b.csv")  # a third blob: the least recently used one ("output") is dropped
    assert blob_client(conn, "input", "a.csv") is first
    assert blob_client(conn, "output", "a.csv") is not output


def test_blob_clients_skip_environment_look_ups_only_where_none_applies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))
    local, remote = "http://127.0.0.1:10000/devstoreaccount1", "https://acct.blob.core.windows.net"
    assert not environment_applies(local) and not environment_applies(remote)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    assert environment_applies(remote) and not environment_applies(local)  # a CA bundle matters to https only
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    (tmp_path / "netrc").write_text("machine acct.blob.core.windows.net login u password p\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert environment_applies(remote) and not environment_applies(local)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert environment_applies(local) and environment_applies(remote)


def test_service_bus_client_from_namespace_or_connection_string() -> None:
    by_identity = new_client(Connection("ServiceBus", fully_qualified_namespace="ns.servicebus.windows.net"))
    assert by_identity.fully_qualified_namespace == "ns.servicebus.windows.net"
    by_key = new_client(
        Connection(
            "ServiceBus",
            connection_string="Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=k;"
            "SharedAccessKey=v;UseDevelopmentEmulator=true",
        )
    )
    assert by_key.fully_qualified_namespace.startswith("127.0.0.1")


def test_endpoint_headers() -> None:
    route = EndpointSettings("churn-v2", "http://x/score", key="k", deployment="blue", connect_timeout_seconds=1,
                             read_timeout_seconds=2)  # fmt: skip
    headers = HttpScoringEndpoint(route)._headers()
    assert headers["Authorization"] == "Bearer k" and headers["azureml-model-deployment"] == "blue"
    bare = EndpointSettings("default", "http://x/score", None, None, connect_timeout_seconds=1, read_timeout_seconds=2)
    assert set(HttpScoringEndpoint(bare)._headers()) == {"Content-Type", "Accept"}
    assert "key=" not in repr(route), "the key stays out of repr"


def test_service_bus_senders_are_reused_within_a_thread_and_never_shared_across_threads() -> None:
    connection = Connection(
        "ServiceBus",
        connection_string="Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true",
    )

    def two_senders() -> tuple[object, object]:
        with _sender(connection, "t") as first, _sender(connection, "t") as second:
            return first, second

    first, second = two_senders()
    assert first is second
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.extend(two_senders()))
    thread.start()
    thread.join()
    assert other[0] is other[1] and other[0] is not first
