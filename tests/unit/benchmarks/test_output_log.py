"""The pipeline benchmark's access-log reader: which logged writes count as an input's output or error record,
and when they are taken."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.output_log import LoggedOutputs
from shared.blobnames import safe_error_name
from shared.contracts import output_blob_name
from tests.support.flow import OutputWatcher

ACCOUNT = "/devstoreaccount1"


def put(container: str, blob: str, status: int = 201, query: str = "") -> str:
    return (
        f'127.0.0.1 - - [06/Dec/2026:09:00:00 +0000] "PUT {ACCOUNT}/{container}/{blob}{query} HTTP/1.1" {status} - '
        '\\"0x8D1\\" "Sun, 06 Dec 2026 09:00:00 GMT"\n'
    )


def reader(tmp_path: Path, names: list[str]) -> tuple[Path, OutputWatcher, LoggedOutputs]:
    log = tmp_path / "azurite.log"
    log.write_text(put("output", output_blob_name(names[0])))  # written before the reader: not this run's
    # reading the log asks the storage service nothing: the watcher's container is never used here
    container: Any = None
    watcher = OutputWatcher(container, names, ["b/", "errors/b/"])
    return log, watcher, LoggedOutputs(log, ACCOUNT, watcher, ["b/", "errors/b/"])


def test_outputs_and_error_records_in_the_log_are_the_inputs_outcomes(tmp_path: Path) -> None:
    names = ["b/00001.csv", "b/00002.csv", "b/00003.csv"]
    log, watcher, outputs = reader(tmp_path, names)
    outputs.read()
    assert watcher.outcomes.missing(names) == names

    with log.open("a") as lines:
        lines.write(put("input", "b/00003.csv"))  # the drop itself
        lines.write(put("output", output_blob_name("b/00001.csv"), query="?comp=block&blockid=AA"))  # not committed
        lines.write(put("output", "other/00001.csv"))
        lines.write(put("results", output_blob_name("b/00002.csv")))
    outputs.read()
    assert watcher.outcomes.missing(names) == names

    before = time.monotonic()
    with log.open("a") as lines:
        lines.write(put("output", output_blob_name("b/00001.csv"), query="?comp=blocklist"))
        lines.write(put("output", safe_error_name("b/00002.csv")))
        lines.write(put("output", output_blob_name("b/00001.csv")))  # written again: the first write counts
    outputs.read()
    assert watcher.outcomes.missing(names) == ["b/00003.csv"]
    assert watcher.outcomes.outputs["b/00001.csv"].kind == "output"
    assert watcher.outcomes.errors["b/00002.csv"].blob == safe_error_name("b/00002.csv")
    assert watcher.outcomes.outputs["b/00001.csv"].at >= before
    assert outputs.from_log == 2 and outputs.from_listing == []
