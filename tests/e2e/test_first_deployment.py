"""The first deployment: the app runs before the scoring endpoint exists (its settings unset or still the raw
Key Vault reference text), and files dropped meanwhile are scored once the endpoint is provided."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.servicebus import ServiceBusClient, ServiceBusSubQueue
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from scoring.examples.churn.data import generate
from shared.contracts import PREDICTION_COLUMN, derive_request_id, error_blob_name, output_blob_name
from tests.fixtures.stack import own_stack, restart_functions

pytestmark = pytest.mark.slow

UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/scoring-uri/)"
FAST_RETRIES = {"SCORING_RETRY_BASE_SECONDS": "1", "SCORING_RETRY_MAX_SECONDS": "2"}
POISON_QUEUE = "webjobs-blobtrigger-poison"


def wait_until(condition: object, what: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.3)
    pytest.fail(f"{what} within {timeout:.0f}s; functions log:\n{log.read_text(errors='replace')[-4000:]}")


def test_files_dropped_before_the_endpoint_exists_are_scored_once_it_does(tmp_path: Path) -> None:
    unresolved = {**FAST_RETRIES, "SCORING_URI": UNRESOLVED, "SCORING_KEY": UNRESOLVED}
    with own_stack(tmp_path / "stack", unresolved) as local:
        log = local.log_path("functions")
        prefix = f"first-{uuid.uuid4().hex[:8]}"
        frames = {f"{prefix}/batch-{i}.csv": generate(12 + i, seed=i, label=False) for i in range(4)}
        with BlobServiceClient.from_connection_string(local.settings.storage_connection_string) as service:
            requests = {}
            for name, frame in frames.items():
                blob = service.get_container_client("input").get_blob_client(name)
                etag = blob.upload_blob(frame.to_csv(index=False).encode())["etag"]
                requests[name] = derive_request_id("input", name, etag)

            # The blob trigger submits every file, and score_request backs off instead of failing: each request
            # gets a retry copy scheduled (shared/score.py logs "request <id>: endpoint answered ...; retry ...").
            def all_backed_off() -> bool:
                text = log.read_text(errors="replace")
                return all(
                    re.search(rf"request {rid}: endpoint answered \S+; retry \d+ in", text) for rid in requests.values()
                )

            wait_until(all_backed_off, "not every request was rescheduled while the endpoint was missing", log)
            assert "is an unresolved Key Vault reference" in log.read_text(errors="replace")
            output = service.get_container_client("output")
            assert not any(output.list_blobs(name_starts_with=f"errors/{prefix}/")), "no file may fail meanwhile"

            # Provide the endpoint: in Azure, deploy_aml.sh sets the settings, which restarts the app.
            local = restart_functions(local, FAST_RETRIES)

            def all_written() -> bool:
                names = {b.name for b in output.list_blobs(name_starts_with=prefix)}
                return all(output_blob_name(name) in names for name in frames)

            wait_until(all_written, "not every file was scored after the endpoint appeared", log, timeout=180)
            for name, frame in frames.items():
                scored = output.download_blob(output_blob_name(name)).readall().decode()
                rows = list(csv.DictReader(io.StringIO(scored)))
                assert [row["customerID"] for row in rows] == list(frame["customerID"])
                assert all(row[PREDICTION_COLUMN] for row in rows), scored[:300]
                with pytest.raises(ResourceNotFoundError):
                    output.download_blob(error_blob_name(name)).readall()

        poison = QueueClient.from_connection_string(local.settings.storage_connection_string, POISON_QUEUE)
        with poison, contextlib.suppress(ResourceNotFoundError):  # never created: nothing was poisoned
            assert poison.get_queue_properties().approximate_message_count == 0
        with (
            ServiceBusClient.from_connection_string(local.settings.servicebus_connection_string) as bus,
            bus.get_subscription_receiver(
                "inference-requests", "scoring", sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dead_letters,
        ):
            assert dead_letters.peek_messages(max_message_count=10) == []
