"""The pipeline benchmark's output watch against Azurite: an output is seen in Azurite's access log without a
listing, a write the log never shows is found by the fallback listing, and the last listing confirms outcomes."""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from benchmarks.output_log import LoggedOutputs
from shared.contracts import output_blob_name
from tests.fixtures.azurite import Azurite
from tests.support.flow import OUTPUT, OutputWatcher

ACCOUNT = "/devstoreaccount1"


def listings(azurite: Azurite) -> int:
    log = azurite.access_log.read_text(encoding="utf-8", errors="replace")
    return len(re.findall(rf'"GET {ACCOUNT}/{OUTPUT}\?[^" ]*comp=list', log))


def test_an_output_is_seen_in_the_log_and_one_the_log_never_shows_by_a_listing(
    azurite: Azurite, tmp_path: Path
) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    logged, missed = f"{prefix}00001.csv", f"{prefix}00002.csv"
    prefixes = [prefix, f"errors/{prefix}"]
    silent = tmp_path / "silent.log"  # a log that never shows the write stands for a line never read
    silent.write_text("")
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        outputs = service.get_container_client(OUTPUT)
        with contextlib.suppress(ResourceExistsError):
            outputs.create_container()
        watcher = OutputWatcher(outputs, [logged], prefixes)
        log = LoggedOutputs(azurite.access_log, ACCOUNT, watcher, prefixes)
        other = OutputWatcher(outputs, [missed], prefixes)
        fallback = LoggedOutputs(silent, ACCOUNT, other, prefixes)
        listed = listings(azurite)

        outputs.upload_blob(output_blob_name(logged), b"x")
        assert log.wait([logged], timeout=30) == []
        assert (log.from_log, log.from_listing, listings(azurite)) == (1, [], listed)  # no listing needed

        outputs.upload_blob(output_blob_name(missed), b"y")
        assert fallback.wait([missed], timeout=30) == []
        assert (fallback.from_log, fallback.from_listing) == (0, [missed])
        assert listings(azurite) > listed

        assert log.unconfirmed([logged]) == []
        outputs.delete_blob(output_blob_name(logged))
        assert log.unconfirmed([logged]) == [logged]
