"""A large input passes the blob trigger without the function app holding it: the trigger binds a BlobClient,
so the host passes a reference and the function process's peak memory does not depend on the file's size."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from tests.fixtures.stack import own_stack, service_pid
from tests.support.memory import GeneratedCsv, peak_rss_bytes

pytestmark = pytest.mark.slow

GIB = 1024**3
MIB = 1024**2
UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/scoring-uri/)"


def wait_triggered(service: BlobServiceClient, name: str, etag: str, log: Path, timeout: float = 120) -> None:
    """Until the host's receipt for this blob version says submit_blob succeeded (it is written complete only
    when the function returned without an error)."""
    hosts = service.get_container_client("azure-webjobs-hosts")
    suffix = f"/Host.Functions.submit_blob/{etag.strip(chr(34))}/input/{name}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for receipt in hosts.list_blobs(name_starts_with="blobreceipts/", include=["metadata"]):
            if receipt.name.endswith(suffix) and (receipt.metadata or {}).get("Incomplete") != "true":
                return
        time.sleep(0.2)
    raise AssertionError(f"submit_blob did not succeed for {name} within {timeout}s:\n{log.read_text()[-3000:]}")


def test_a_one_gib_input_passes_the_trigger_with_the_peak_memory_of_a_small_one(tmp_path: Path) -> None:
    # No scoring service: score_request backs off on the unresolved endpoint, so only the trigger does work.
    settings = {"SCORING_URI": UNRESOLVED, "MAX_INPUT_BYTES": str(2 * GIB)}
    with own_stack(tmp_path / "stack", settings, ["azurite", "servicebus", "functions"]) as local:
        pid = service_pid(local, "functions")
        log = local.log_path("functions")
        prefix = f"large-{uuid.uuid4().hex[:8]}"
        with BlobServiceClient.from_connection_string(local.settings.storage_connection_string) as service:
            sizes = {"small.csv": 64 * 1024, "large.csv": GIB + 7}
            peaks = {}
            for name, size in sizes.items():
                blob = service.get_blob_client("input", f"{prefix}/{name}")
                etag = blob.upload_blob(GeneratedCsv(size), length=size, max_concurrency=1)["etag"]
                wait_triggered(service, f"{prefix}/{name}", etag, log)
                peaks[name] = peak_rss_bytes(pid)
    growth = peaks["large.csv"] - peaks["small.csv"]
    print(f"functions host peak RSS: {peaks['small.csv'] / MIB:.0f} MiB after a 64 KiB input, "
          f"{peaks['large.csv'] / MIB:.0f} MiB after a 1 GiB input (growth {growth / MIB:.1f} MiB)")  # fmt: skip
    assert growth < 32 * MIB, f"the function process grew by {growth / MIB:.0f} MiB for a 1 GiB input"
