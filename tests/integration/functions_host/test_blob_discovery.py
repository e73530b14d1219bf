"""How the blob trigger finds new blobs, through the real host process against Azurite: by following Azurite's
access log (no listing between a write and its invocation, whatever the container holds), by the slow safety-net
listing when the log never shows a write, and, for an Event Grid-source trigger, never for blobs written before
the trigger first ran (Event Grid reports none of those). A blob the log shows is keyed by the version its line
names: the host does not ask Azurite for its properties."""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azure.storage.blob import BlobServiceClient, ContainerClient

from devstack.functions_host.blob_listing import LARGEST_PAGE, PAGE_SIZE
from tests.fixtures.azurite import Azurite
from tests.support.flow import secrets_in_logs
from tests.support.wait import wait_until

from .conftest import FixtureApp
from .test_blob import new_container, next_second, settings

PREFILLED = 3000


def listings(azurite: Azurite, container: str) -> int:
    """List Blobs requests Azurite answered for ``container`` so far (one per page), from its access log."""
    pattern = re.compile(rf'"GET /devstoreaccount1/{re.escape(container)}\?[^" ]*comp=list[^" ]* HTTP')
    return len(pattern.findall(azurite.access_log.read_text(encoding="utf-8", errors="replace")))


def page_sizes(azurite: Azurite, container: str) -> list[int]:
    """The page size (``maxresults``) of each List Blobs request Azurite answered for ``container``, in order."""
    pattern = re.compile(rf'"GET /devstoreaccount1/{re.escape(container)}\?[^" ]*comp=list[^" ]*maxresults=(\d+)')
    return [int(size) for size in pattern.findall(azurite.access_log.read_text(encoding="utf-8", errors="replace"))]


def requests_for(azurite: Azurite, container: str, blob: str) -> list[str]:
    """``METHOD status`` of each request Azurite answered for one blob so far, from its access log."""
    pattern = re.compile(
        rf'"([A-Z]+) /devstoreaccount1/{re.escape(container)}/{re.escape(blob)}(?:\?[^" ]*)? HTTP[^"]*" (\d+)'
    )
    log = azurite.access_log.read_text(encoding="utf-8", errors="replace")
    return [f"{method} {status}" for method, status in pattern.findall(log)]


def prefill(container: ContainerClient, count: int) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: container.upload_blob(f"old/{i:05d}.csv", b"a\n1\n"), range(count)))


def event_grid_app(fixture_app: FixtureApp, azurite: Azurite, host: str) -> str:
    """Settings for the fixture app's EventGrid-source trigger on a new container (its plain blob trigger watches
    another, empty one) under a new host id; returns the watched container."""
    watched, empty = new_container(azurite), new_container(azurite)
    fixture_app.write_settings(
        {**settings(azurite, empty, f"{host}-{uuid.uuid4().hex[:8]}"), "FIXTURE_EVENT_GRID_BLOB": "1",
         "EVENT_CONTAINER": watched}
    )  # fmt: skip
    return watched


def test_new_blob_in_a_big_container_is_found_through_the_access_log_without_a_listing(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    big = event_grid_app(fixture_app, azurite, "follow")
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blobs = service.get_container_client(big)
        prefill(blobs, PREFILLED)  # written before the trigger first runs: Event Grid would never report them
        next_second(azurite, service)
        fixture_app.start(
            extra_args=[
                "--blob-poll-interval", "0.2", "--blob-scan-interval", "600",
                "--storage-access-log", f"{azurite.blob_endpoint}={azurite.access_log}",
            ]
        )  # fmt: skip
        # The start-up listing reads every page of the container...
        pages = math.ceil(PREFILLED / PAGE_SIZE)
        wait_until(lambda: listings(azurite, big) >= pages, 60, "the start-up listing", interval=0.05)
        # ...and queues none of them (they are older than the trigger); the log brings the new ones.
        blobs.upload_blob("new/first.csv", b"a\n1\n")
        fixture_app.wait_for("on_event_blob", lambda e: len(e) >= 1, timeout=60)
        listed = listings(azurite, big)

        uploaded = time.monotonic()
        blobs.upload_blob("new/second.csv", b"a\n2\n")
        entries = fixture_app.wait_for("on_event_blob", lambda e: len(e) >= 2, timeout=10)
        found_after = time.monotonic() - uploaded
        assert listings(azurite, big) == listed  # found without listing the container
        # A listing-based host would have needed the next listing, 600 s away; allow for a loaded machine.
        assert found_after < 10
        assert sorted(e["name"] for e in entries) == [f"{big}/new/first.csv", f"{big}/new/second.csv"]
        # Overwriting a blob is a new version (Put Blob answered 201 again): it runs once more.
        blobs.upload_blob("new/first.csv", b"a\n3\n", overwrite=True)
        entries = fixture_app.wait_for("on_event_blob", lambda e: len(e) >= 3, timeout=10)
    assert [e["name"] for e in entries].count(f"{big}/new/first.csv") == 2
    assert not any("/old/" in e["name"] for e in entries)  # the start-up listing ran, and skipped them
    assert listings(azurite, big) == listed
    # The host lists with a SAS: the log keeps the request, not the signature.
    assert "sig=REDACTED" in azurite.access_log.read_text(encoding="utf-8", errors="replace")
    assert not secrets_in_logs(azurite.access_log.parent)


def test_the_safety_net_listing_reads_the_container_in_the_fewest_pages(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    big = event_grid_app(fixture_app, azurite, "pages")
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        prefill(service.get_container_client(big), PAGE_SIZE + 1)
    fixture_app.start(
        extra_args=[
            "--blob-poll-interval", "0.2", "--blob-scan-interval", "1",
            "--storage-access-log", f"{azurite.blob_endpoint}={azurite.access_log}",
        ]
    )  # fmt: skip
    # The start-up listing may find blobs to run at once: small pages, two of them. The safety-net listings that
    # follow have nothing waiting on them: one request each.
    wait_until(lambda: len(page_sizes(azurite, big)) >= 4, 60, "two safety-net listings", interval=0.05)
    assert page_sizes(azurite, big)[:4] == [PAGE_SIZE, PAGE_SIZE, LARGEST_PAGE, LARGEST_PAGE]


def test_a_write_the_log_never_shows_is_found_by_the_safety_net_listing_once(
    fixture_app: FixtureApp, azurite: Azurite, tmp_path: Path
) -> None:
    container = new_container(azurite)
    host_id = f"net-{uuid.uuid4().hex[:8]}"
    fixture_app.write_settings(settings(azurite, container, host_id))
    # A log that never shows the write stands for a lost line (a rotated log, Azurite killed mid-write).
    silent = tmp_path / "other.log"
    silent.write_text("")
    host = fixture_app.start(
        extra_args=[
            "--blob-poll-interval", "0.2", "--blob-scan-interval", "3",
            "--storage-access-log", f"{azurite.blob_endpoint}={silent}",
        ]
    )  # fmt: skip
    wait_until(lambda: listings(azurite, container) >= 1, 60, "the start-up listing", interval=0.05)
    before = listings(azurite, container)
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.get_container_client(container).upload_blob("missed.csv", b"a\n1\n")
    fixture_app.wait_for("on_blob", lambda e: len(e) >= 1, timeout=60)
    assert listings(azurite, container) > before  # it took a listing to find it
    assert "the safety-net listing queued 1 blob(s) not (yet) seen in the log" in host.log_text()
    # Later listings find its receipt: it runs once.
    seen = listings(azurite, container)
    wait_until(lambda: listings(azurite, container) > seen, 30, "another listing", interval=0.05)
    assert [e["name"] for e in fixture_app.recorded("on_blob")] == [f"{container}/missed.csv"]


def test_an_event_grid_trigger_runs_for_blobs_written_while_the_host_was_down_but_not_before_it_first_ran(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    events = event_grid_app(fixture_app, azurite, "events")
    follow = ["--storage-access-log", f"{azurite.blob_endpoint}={azurite.access_log}", "--blob-scan-interval", "600"]
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blobs = service.get_container_client(events)
        blobs.upload_blob("before.csv", b"a\n1\n")
        next_second(azurite, service)
        host = fixture_app.start(extra_args=follow)
        blobs.upload_blob("first.csv", b"a\n1\n")
        fixture_app.wait_for("on_event_blob", lambda e: len(e) >= 1, timeout=60)
        assert host.stop() == 0
        # Event Grid keeps the events of a stopped app; here the start-up listing finds what came meanwhile.
        blobs.upload_blob("while-down.csv", b"a\n2\n")
        fixture_app.start(extra_args=follow)
        entries = fixture_app.wait_for("on_event_blob", lambda e: len(e) >= 2, timeout=60)
    assert [e["name"] for e in entries] == [f"{events}/first.csv", f"{events}/while-down.csv"]


def test_a_blob_from_the_log_runs_once_keyed_by_the_version_its_line_names_without_reading_its_properties(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    """The log line carries the ETag and Last-Modified of the version written (``azurite_redacted.js``): the
    receipt is keyed by that ETag, and the only read of the blob is the function's own (an SDK-type parameter
    gets a reference, so the host itself needs nothing of the blob)."""
    plain, referenced = new_container(azurite), new_container(azurite)
    host_id = f"etag-{uuid.uuid4().hex[:8]}"
    fixture_app.write_settings({**settings(azurite, plain, host_id), "CLIENT_CONTAINER": referenced})
    follow = ["--storage-access-log", f"{azurite.blob_endpoint}={azurite.access_log}", "--blob-scan-interval", "600"]
    fixture_app.start(
        env={**os.environ, "FIXTURE_BLOB_CLIENT": "1"}, extra_args=["--blob-poll-interval", "0.2", *follow]
    )
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        next_second(azurite, service)  # written after the host started following the log: a new version
        blobs = service.get_container_client(referenced)
        etag = str(blobs.get_blob_client("one.csv").upload_blob(b"a\n1\n")["etag"])
        receipt = service.get_container_client("azure-webjobs-hosts").get_blob_client(
            f"blobreceipts/{host_id}/Host.Functions.on_blob_client/{etag.strip(chr(34))}/{referenced}/one.csv"
        )
        wait_until(receipt.exists, 30, "the receipt keyed by the ETag of the write", interval=0.05)
        assert receipt.get_blob_properties().metadata == {"Attempts": "1"}
        # a later blob's call proves the host has taken everything the log showed before it
        blobs.upload_blob("two.csv", b"a\n2\n")
        entries = fixture_app.wait_for("on_blob_client", lambda e: any(x["blob"] == "two.csv" for x in e))
    assert [(e["blob"], e["etag"]) for e in entries if e["blob"] == "one.csv"] == [("one.csv", etag)]
    # the upload and the function's own Get Blob Properties; the host asked nothing
    assert requests_for(azurite, referenced, "one.csv") == ["PUT 201", "HEAD 200"]
