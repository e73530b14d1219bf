"""An EventGrid-source blob trigger through the real host process against Azurite: as in Azure, no receipt blob in
storage; the host keeps each version's state in its own journal (``<data dir>/blobreceipts/...``), trusted as far
as the checkpoint it writes to storage. A restart runs no done version again and runs again the one a ``kill -9``
interrupted; poison still works; when storage loses writes (its checkpoint goes back), what was settled after it
runs again."""

from __future__ import annotations

import base64
import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from tests.fixtures.azurite import Azurite
from tests.support.wait import wait_for, wait_until

from .conftest import FixtureApp
from .test_blob import new_container, next_second, settings

FUNCTION = "Host.Functions.on_event_blob"


class EventGridApp:
    """The fixture app's EventGrid-source trigger on a new container under a new host id."""

    def __init__(self, fixture_app: FixtureApp, azurite: Azurite, extensions: dict[str, Any] | None = None) -> None:
        self.app = fixture_app
        self.azurite = azurite
        self.container, empty = new_container(azurite), new_container(azurite)
        self.host_id = f"eg-{uuid.uuid4().hex[:8]}"
        fixture_app.write_settings(
            {
                **settings(azurite, empty, self.host_id),
                "FIXTURE_EVENT_GRID_BLOB": "1",
                "EVENT_CONTAINER": self.container,
            }
        )
        fixture_app.write_host_json(extensions or {})
        self.journal = fixture_app.data_dir / "blobreceipts" / self.host_id / f"{FUNCTION}.jsonl"
        self.service = BlobServiceClient.from_connection_string(azurite.connection_string)
        self.blobs = self.service.get_container_client(self.container)
        self.hosts = self.service.get_container_client("azure-webjobs-hosts")
        self.checkpoint = self.hosts.get_blob_client(f"eventgrid-checkpoints/{self.host_id}/{FUNCTION}")

    def start(self) -> Any:
        follow = ["--storage-access-log", f"{self.azurite.blob_endpoint}={self.azurite.access_log}"]
        return self.app.start(extra_args=["--blob-poll-interval", "0.2", "--blob-scan-interval", "600", *follow])

    def calls(self, name: str) -> int:
        return [e["name"] for e in self.app.recorded("on_event_blob")].count(f"{self.container}/{name}")

    def wait_calls(self, name: str, count: int) -> None:
        self.app.wait_for("on_event_blob", lambda e: [x["name"] for x in e].count(f"{self.container}/{name}") >= count)

    def state(self, name: str) -> tuple[int, str] | None:
        """(attempts, state) of the blob's last version in the journal, None when it has none."""
        found = None
        for raw in self.journal.read_text(encoding="utf-8").splitlines():
            line = json.loads(raw)
            if line.get("blob") == name:
                found = (int(line["attempts"]), str(line["state"]))
        return found

    def journal_seq(self) -> int:
        return max(int(json.loads(raw).get("seq", 0)) for raw in self.journal.read_text(encoding="utf-8").splitlines())

    def checkpoint_seq(self) -> int:
        try:
            return int((self.checkpoint.get_blob_properties().metadata or {}).get("seq", "0"))
        except ResourceNotFoundError:
            return 0

    def receipt_blobs(self) -> list[str]:
        return [b.name for b in self.hosts.list_blobs(name_starts_with=f"blobreceipts/{self.host_id}/")]

    def close(self) -> None:
        self.service.close()


def test_an_event_grid_trigger_keeps_no_receipt_in_storage_and_a_restart_runs_no_done_version_again(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    app = EventGridApp(fixture_app, azurite)
    try:
        host = app.start()
        next_second(azurite, app.service)
        app.blobs.upload_blob("one.csv", b"a\n1\n")
        app.blobs.upload_blob("two.csv", b"a\n2\n")
        app.wait_calls("one.csv", 1)
        app.wait_calls("two.csv", 1)
        wait_until(lambda: app.state("two.csv") == (1, "done"), 10, "two.csv done in the journal")
        assert host.stop() == 0
        assert app.state("one.csv") == (1, "done")
        assert app.receipt_blobs() == []
        assert app.checkpoint_seq() == app.journal_seq()  # the host's last checkpoint covers every line
        # no request of the host to a receipt blob at all
        log = azurite.access_log.read_text(encoding="utf-8", errors="replace")
        assert f"/blobreceipts/{app.host_id}/" not in log

        # The restart's first listing sees both blobs; the journal says done: neither runs again.
        restarted = app.start()
        app.blobs.upload_blob("three.csv", b"a\n3\n")
        app.wait_calls("three.csv", 1)
        assert (app.calls("one.csv"), app.calls("two.csv")) == (1, 1)
        # a new version of a done blob is new work
        app.blobs.upload_blob("one.csv", b"a\n4\n", overwrite=True)
        app.wait_calls("one.csv", 2)
        assert restarted.stop() == 0
        assert app.receipt_blobs() == []
    finally:
        app.close()


def test_a_version_killed_mid_call_runs_again_after_the_restart_and_a_done_one_does_not(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    app = EventGridApp(fixture_app, azurite)
    try:
        first = app.start()
        next_second(azurite, app.service)
        app.blobs.upload_blob("a-done.csv", b"1")
        app.wait_calls("a-done.csv", 1)
        # Settled and covered by a checkpoint in storage (a version settled in the last seconds before a kill -9
        # runs again, as one storage may have lost)
        wait_until(lambda: app.state("a-done.csv") == (1, "done") and app.checkpoint_seq() >= app.journal_seq(),
                   20, "a-done.csv done and checkpointed")  # fmt: skip
        app.blobs.upload_blob("b-hang.csv", b"2", metadata={"hang": "once"})
        app.wait_calls("b-hang.csv", 1)
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        first.stop()
        assert app.state("b-hang.csv") == (1, "claimed")  # the call was under way

        second = app.start()
        app.wait_calls("b-hang.csv", 2)
        wait_until(lambda: app.state("b-hang.csv") == (2, "done"), 10, "b-hang.csv done on its second attempt")
        assert app.calls("a-done.csv") == 1
        assert second.stop() == 0
        assert app.receipt_blobs() == []
    finally:
        app.close()


def test_a_failing_version_reaches_the_poison_queue_and_stays_there_until_it_changes(
    fixture_app: FixtureApp, azurite: Azurite
) -> None:
    app = EventGridApp(fixture_app, azurite, {"blobs": {"poisonBlobThreshold": 3}})
    poison = QueueClient.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    try:
        host = app.start()
        next_second(azurite, app.service)
        etag = str(app.blobs.upload_blob("bad.csv", b"x", metadata={"fail": "yes"}).get_blob_properties().etag)

        def poisoned() -> dict[str, Any] | None:
            try:
                messages = list(poison.peek_messages(max_messages=32))
            except ResourceNotFoundError:
                return None
            for message in messages:
                body = json.loads(_decode(message.content))
                if body.get("ETag") == etag.strip('"'):
                    return dict(body)
            return None

        with poison:
            message = wait_for(poisoned, 30, "the poison message", interval=0.2)
        assert message == {
            "Type": "BlobTrigger", "FunctionId": FUNCTION, "BlobType": "BlockBlob",
            "ContainerName": app.container, "BlobName": "bad.csv", "ETag": etag.strip('"'),
        }  # fmt: skip
        wait_until(lambda: app.state("bad.csv") == (3, "poisoned"), 10, "bad.csv poisoned in the journal")
        assert app.calls("bad.csv") == 3
        assert host.stop() == 0

        # Not tried again by a restarted host's listing; tried again once it changes.
        restarted = app.start()
        app.blobs.upload_blob("after.csv", b"y")
        app.wait_calls("after.csv", 1)
        assert app.calls("bad.csv") == 3
        app.blobs.upload_blob("bad.csv", b"fixed", overwrite=True)
        app.wait_calls("bad.csv", 4)
        assert restarted.stop() == 0
        assert app.receipt_blobs() == []
    finally:
        app.close()


def test_versions_settled_after_the_checkpoint_storage_kept_run_again(
    fixture_app: FixtureApp, azurite: Azurite, tmp_path: Path
) -> None:
    """Azurite restores its last save after a kill -9, with the function's writes of the last seconds gone and the
    host's checkpoint as it was then: here the checkpoint is put back by hand, once while the host is stopped and
    once while it runs."""
    app = EventGridApp(fixture_app, azurite)
    try:
        host = app.start()
        next_second(azurite, app.service)
        app.blobs.upload_blob("one.csv", b"a\n1\n")
        app.wait_calls("one.csv", 1)
        wait_until(lambda: app.state("one.csv") == (1, "done"), 10, "one.csv done")
        one_settled = app.journal_seq()
        app.blobs.upload_blob("two.csv", b"a\n2\n")
        app.wait_calls("two.csv", 1)
        assert host.stop() == 0

        # While stopped: storage went back to a checkpoint from before two.csv was settled.
        properties = app.checkpoint.get_blob_properties()
        app.checkpoint.set_blob_metadata({**(properties.metadata or {}), "seq": str(one_settled)})
        restarted = app.start()
        app.wait_calls("two.csv", 2)
        assert app.calls("one.csv") == 1
        wait_until(lambda: app.state("two.csv") == (1, "done"), 10, "two.csv done again, as attempt 1")
        wait_until(lambda: app.checkpoint_seq() >= app.journal_seq(), 20, "a checkpoint covering two.csv")

        # While running: the checkpoint goes back again; the host finds out with its next checkpoint write.
        before_three = app.journal_seq()
        properties = app.checkpoint.get_blob_properties()
        app.checkpoint.set_blob_metadata({**(properties.metadata or {}), "seq": str(one_settled)})
        app.blobs.upload_blob("three.csv", b"a\n3\n")
        app.wait_calls("two.csv", 3)
        app.wait_calls("three.csv", 2)  # settled after the checkpoint too, so it runs again as well
        assert app.calls("one.csv") == 1
        assert app.journal_seq() > before_three
        assert "run again" in restarted.log_text()
        assert restarted.stop() == 0
    finally:
        app.close()


def _decode(content: str) -> str:
    try:
        return base64.b64decode(content, validate=True).decode()
    except ValueError:
        return content
