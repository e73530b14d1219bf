"""Blob trigger through the real host process against Azurite: trigger fields, the whole content for an
InputStream and a client for an SDK type (as the real host and worker do), receipts, poison."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.queue import QueueClient, QueueMessage

from tests.fixtures.azurite import Azurite
from tests.support.memory import GeneratedCsv, peak_rss_bytes
from tests.support.wait import wait_for, wait_until

from .conftest import FixtureApp

YEARLY = "0 0 0 1 1 *"


def settings(azurite: Azurite, container: str, host_id: str) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "DataStorage": azurite.connection_string,
        "WATCH_CONTAINER": container,
        "TICK_SCHEDULE": YEARLY,
        "AzureFunctionsWebHost__hostid": host_id,
    }


def new_container(azurite: Azurite) -> str:
    name = f"watch-{uuid.uuid4().hex[:10]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
    return name


def _poison_messages(read: Callable[..., Iterable[QueueMessage]], **options: Any) -> list[QueueMessage]:
    """What the poison queue holds now; none while it does not exist (the host creates it with its first message)."""
    try:
        return list(read(**options))
    except ResourceNotFoundError:
        return []


def next_second(azurite: Azurite, service: BlobServiceClient) -> None:
    """Waits until Azurite's clock is in a later second than every blob written so far: Last-Modified has
    one-second resolution, and a trigger that first runs in the same second as a blob counts it as new."""
    probe = service.get_container_client(new_container(azurite)).get_blob_client("clock")
    first = probe.upload_blob(b"")["last_modified"]
    wait_until(lambda: probe.upload_blob(b"", overwrite=True)["last_modified"] > first, 10,
               "Azurite's clock to reach the next second", interval=0.1)  # fmt: skip


def test_fields_content_and_once_per_etag_across_restarts(fixture_app: FixtureApp, azurite: Azurite) -> None:
    container = new_container(azurite)
    host_id = f"blob-{uuid.uuid4().hex[:8]}"
    fixture_app.write_settings(settings(azurite, container, host_id))
    big = os.urandom(3 * 1024 * 1024 + 17)
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blobs = service.get_container_client(container)
        blobs.upload_blob(
            "in/small.csv", b"a,b\n1,2\n", metadata={"origin": "test"},
            content_settings=ContentSettings(content_type="text/csv"),
        )  # fmt: skip
        blobs.upload_blob("big.bin", big, metadata={"read": "yes"})
        host = fixture_app.start(extra_args=["--blob-poll-interval", "0.3"])

        entries = fixture_app.wait_for("on_blob", lambda e: len(e) >= 2)
        by_name = {e["name"]: e for e in entries}
        small = by_name[f"{container}/in/small.csv"]
        assert small["uri"].endswith(f"/{container}/in/small.csv")
        assert small["length"] == 8
        assert small["metadata"] == {"origin": "test"}
        assert small["content_type"] == "text/csv"
        assert small["stream_type"] == "azure.functions.blob.InputStream"  # the worker's own class
        large = by_name[f"{container}/big.bin"]
        assert large["read_bytes"] == len(big)
        assert large["sha256"] == hashlib.sha256(big).hexdigest()

        # Receipts: a restarted host does not run the same blob versions again...
        host.stop()
        restarted = fixture_app.start(extra_args=["--blob-poll-interval", "0.3"])
        blobs.upload_blob("later.txt", b"x")
        fixture_app.wait_for("on_blob", lambda e: any(x["name"].endswith("/later.txt") for x in e))
        # ...but a new version (new ETag) of a blob is processed again.
        blobs.upload_blob("in/small.csv", b"a,b\n3,4\n5,6\n", overwrite=True, metadata={"origin": "v2"})
        entries = fixture_app.wait_for("on_blob", lambda e: any(x["metadata"] == {"origin": "v2"} for x in e))
        names = [e["name"] for e in entries]
        assert names.count(f"{container}/in/small.csv") == 2
        assert names.count(f"{container}/big.bin") == 1
        assert restarted.stop() == 0


@pytest.mark.parametrize("follow_log", [False, True], ids=["listing", "access-log"])
def test_failing_blob_is_retried_then_poisoned(fixture_app: FixtureApp, azurite: Azurite, follow_log: bool) -> None:
    container = new_container(azurite)
    host_id = f"poison-{uuid.uuid4().hex[:8]}"
    fixture_app.write_settings(settings(azurite, container, host_id))
    fixture_app.write_host_json({"queues": {"maxDequeueCount": 3}})
    poison = QueueClient.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_container_client(container).upload_blob("bad.csv", b"x", metadata={"fail": "yes"})
        etag = blob.get_blob_properties().etag
    # Following the log, the only listing is the first one: the retries cannot come from listings.
    follow = ["--storage-access-log", f"{azurite.blob_endpoint}={azurite.access_log}", "--blob-scan-interval", "600"]
    fixture_app.start(extra_args=["--blob-poll-interval", "0.2", *(follow if follow_log else [])])

    fixture_app.wait_for("on_blob", lambda e: len(e) >= 3)

    def poisoned() -> dict[str, Any] | None:
        found = [
            m
            for m in _poison_messages(poison.receive_messages, visibility_timeout=1)
            if container in _decode(m.content)
        ]
        if not found:
            return None
        poison.delete_message(found[0])
        return dict(json.loads(_decode(found[0].content)))

    with poison:
        message = wait_for(poisoned, 30, "the poison message", interval=0.2)
    assert message == {
        "Type": "BlobTrigger",
        "FunctionId": "Host.Functions.on_blob",
        "BlobType": "BlockBlob",
        "ContainerName": container,
        "BlobName": "bad.csv",
        "ETag": etag.strip('"'),
    }
    # Poisoned: later scans leave it alone. Each new blob below is found by a later scan, which lists bad.csv too.
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        for name in ("after-1.csv", "after-2.csv"):
            service.get_container_client(container).upload_blob(name, b"y")
            fixture_app.wait_for("on_blob", lambda e, name=name: any(x["name"].endswith(f"/{name}") for x in e))
    assert [e["name"] for e in fixture_app.recorded("on_blob")].count(f"{container}/bad.csv") == 3


def _follow(azurite: Azurite) -> list[str]:
    """Host arguments: follow Azurite's log; the only listing is the one at start."""
    return ["--storage-access-log", f"{azurite.blob_endpoint}={azurite.access_log}", "--blob-scan-interval", "600"]


def _receipts(hosts: ContainerClient, host_id: str, blob: str) -> list[dict[str, str]]:
    """The metadata of each receipt of ``blob`` (any ETag) the function ``on_blob`` has under ``host_id``."""
    prefix = f"blobreceipts/{host_id}/Host.Functions.on_blob/"
    return [
        dict(r.metadata or {})
        for r in hosts.list_blobs(name_starts_with=prefix, include=["metadata"])
        if r.name.endswith(f"/{blob}")
    ]


def test_a_new_blob_in_the_log_that_keeps_failing_reaches_poison_after_the_threshold(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    """A blob the log shows gets no receipt before its first call; the failed call writes one, so the retries
    count towards the threshold as for a listed blob."""
    container = new_container(azurite)
    host_id = f"poison-new-{uuid.uuid4().hex[:8]}"
    fixture_app.write_settings(settings(azurite, container, host_id))
    fixture_app.write_host_json({"blobs": {"poisonBlobThreshold": 3}})
    fixture_app.start(extra_args=["--blob-poll-interval", "0.2", *_follow(azurite)])
    poison = QueueClient.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        next_second(azurite, service)  # written after the host started following the log: a new version
        hosts = service.get_container_client("azure-webjobs-hosts")
        blob = service.get_container_client(container).upload_blob("bad.csv", b"x", metadata={"fail": "yes"})
        etag = str(blob.get_blob_properties().etag).strip('"')

        def poisoned() -> bool:
            return any(
                json.loads(_decode(m.content)).get("ETag") == etag
                for m in _poison_messages(poison.peek_messages, max_messages=32)
            )

        with poison:
            wait_for(poisoned, 30, "the poison message", interval=0.2)
        assert _receipts(hosts, host_id, "bad.csv") == [{"Attempts": "3", "Poisoned": "true"}]
        # a later blob, found in the log after the poisoned one's last retry would have come: no fourth call
        service.get_container_client(container).upload_blob("after.csv", b"y")
        fixture_app.wait_for("on_blob", lambda e: any(x["name"].endswith("/after.csv") for x in e))
    assert [e["name"] for e in fixture_app.recorded("on_blob")].count(f"{container}/bad.csv") == 3


def test_a_host_killed_during_a_call_runs_the_blob_again_and_a_done_blob_never(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    """kill -9 during the call of a new blob (found through the log, so with no receipt yet): the next host
    runs it again from its first listing; a blob done before the kill, and the re-run one, are not run again
    by later hosts."""
    container = new_container(azurite)
    host_id = f"kill-{uuid.uuid4().hex[:8]}"
    fixture_app.write_settings(settings(azurite, container, host_id))
    # one worker: the first listing's blobs are taken in name order, so a later name proves the earlier were seen
    fixture_app.write_host_json({"blobs": {"maxDegreeOfParallelism": 1}})
    args = ["--blob-poll-interval", "0.2"]
    first = fixture_app.start(extra_args=[*args, *_follow(azurite)])
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blobs = service.get_container_client(container)
        hosts = service.get_container_client("azure-webjobs-hosts")
        next_second(azurite, service)  # written after the host started following the log: new versions
        blobs.upload_blob("a-done.csv", b"1")
        fixture_app.wait_for("on_blob", lambda e: any(x["name"].endswith("/a-done.csv") for x in e))
        wait_for(lambda: _receipts(hosts, host_id, "a-done.csv") == [{"Attempts": "1"}], 10, "a-done.csv's receipt")
        blobs.upload_blob("b-hang.csv", b"2", metadata={"hang": "once"})
        fixture_app.wait_for("on_blob", lambda e: any(x["name"].endswith("/b-hang.csv") for x in e))
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        first.stop()
        assert _receipts(hosts, host_id, "b-hang.csv") == []  # nothing written before the call

        second = fixture_app.start(extra_args=[*args, *_follow(azurite)])
        entries = fixture_app.wait_for(
            "on_blob", lambda e: [x["name"] for x in e].count(f"{container}/b-hang.csv") == 2
        )
        assert [e["name"] for e in entries].count(f"{container}/a-done.csv") == 1
        wait_for(lambda: _receipts(hosts, host_id, "b-hang.csv") == [{"Attempts": "1"}], 10, "b-hang.csv's receipt")
        assert second.stop() == 0

        # A third host lists only (no log): c-later.csv comes after both in its first listing.
        third = fixture_app.start(extra_args=args)
        blobs.upload_blob("c-later.csv", b"3")
        entries = fixture_app.wait_for("on_blob", lambda e: any(x["name"].endswith("/c-later.csv") for x in e))
        names = [e["name"] for e in entries]
        assert names.count(f"{container}/a-done.csv") == 1
        assert names.count(f"{container}/b-hang.csv") == 2
        assert third.stop() == 0


def _decode(content: str) -> str:
    try:
        return base64.b64decode(content, validate=True).decode()
    except ValueError:
        return content


def test_sdk_type_parameter_gets_a_client_and_an_input_stream_gets_the_whole_content(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    """The real host sends an InputStream's whole content before the call, and only a reference for an SDK type:
    the host process's peak memory grows by the blob's size for the first and not for the second."""
    size = 96 * 1024 * 1024
    streamed, referenced = new_container(azurite), new_container(azurite)
    host_id = f"sdk-{uuid.uuid4().hex[:8]}"
    fixture_app.write_settings({**settings(azurite, streamed, host_id), "CLIENT_CONTAINER": referenced})
    host = fixture_app.start(env={**os.environ, "FIXTURE_BLOB_CLIENT": "1"}, extra_args=["--blob-poll-interval", "0.2"])
    assert host.pid is not None
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.get_container_client(referenced).upload_blob("warm-up.csv", b"a\n1\n")
        fixture_app.wait_for("on_blob_client", lambda e: len(e) >= 1)
        service.get_container_client(streamed).upload_blob("warm-up.csv", b"a\n1\n")
        fixture_app.wait_for("on_blob", lambda e: len(e) >= 1)
        baseline = peak_rss_bytes(host.pid)

        upload = service.get_container_client(referenced).get_blob_client("big.csv")
        upload.upload_blob(GeneratedCsv(size), length=size, metadata={"read": "no"})
        [warm, big] = fixture_app.wait_for("on_blob_client", lambda e: len(e) >= 2)
        assert big["client_type"] == "azure.storage.blob._blob_client.BlobClient"
        assert (big["container"], big["blob"], big["size"]) == (referenced, "big.csv", size)
        assert big["url"] == upload.url
        after_reference = peak_rss_bytes(host.pid)

        service.get_container_client(streamed).upload_blob("big.csv", GeneratedCsv(size), length=size)
        fixture_app.wait_for("on_blob", lambda e: len(e) >= 2)
        after_content = peak_rss_bytes(host.pid)
        # Like the worker, the host builds one client per blob reference and hands it out again.
        upload.upload_blob(b"a\n2\n", overwrite=True)
        entries = fixture_app.wait_for("on_blob_client", lambda e: len(e) >= 3)
    mib = 1024 * 1024
    print(f"host peak RSS: {baseline / mib:.0f} MiB, {after_reference / mib:.0f} MiB after a {size // mib} MiB blob "
          f"bound as BlobClient, {after_content / mib:.0f} MiB after one bound as InputStream")  # fmt: skip
    assert after_reference - baseline < size / 4, (baseline, after_reference)
    assert after_content - after_reference >= size, (after_reference, after_content)
    assert entries[2]["client_id"] == big["client_id"] and entries[2]["size"] == 4
    assert warm["client_id"] != big["client_id"]
