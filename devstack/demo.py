"""``python -m devstack demo``: score a handful of sample files end to end on the local stack, on three models.

Starts the stack if needed, with two extra model routes beside the default (``multiclass`` and ``regression``,
see :mod:`devstack.demo_models`), writes sample files with ``python -m scoring.sample``, uploads them to the
``input`` container (metadata ``session_id``, and ``model`` for the extra routes), waits for each output (or
its error record) in the ``output`` container, compares the checked outputs with their model's in-process
predictions and prints a summary. Exit status 1 when a good file was not scored (or not by its model) or a
bad file was not reported as an error. On a stack already running without the extra routes, their files are
left out with a note.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from devstack import procs
from devstack.demo_models import DEMO_ROUTES, model_dir_of, prediction_mismatches, train_route_models, with_demo_routes
from devstack.runner import StackError
from devstack.stack import LocalStack, StackSettings
from shared.contracts import DEFAULT_MODEL, derive_request_id, detect_format, error_blob_name, output_blob_name

logger = logging.getLogger(__name__)

INPUT_CONTAINER = "input"
OUTPUT_CONTAINER = "output"
LEDGER_CONTAINER = "ledger"
POLL_SECONDS = 0.5


@dataclass
class DemoFile:
    path: Path
    blob_name: str
    expect_error: bool
    model: str = DEFAULT_MODEL
    check: bool = False
    uploaded_at: float = 0.0
    finished_at: float | None = None
    status: str = "waiting"
    rows: int | None = None
    output: str = ""
    etag: str = ""

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def as_expected(self) -> bool:
        if self.expect_error:
            return self.status.startswith("error")
        return self.status.startswith("scored") and "differ" not in self.status


@dataclass(frozen=True)
class Sample:
    """One demo input: the arguments for ``python -m scoring.sample`` and whether it must fail."""

    name: str
    args: tuple[str, ...]
    expect_error: bool = False
    model: str = DEFAULT_MODEL  # the route (blob metadata ``model``)
    check: bool = False  # compare the output with the model's in-process predictions


def route_sample(route: str, name: str, *, rows: int, fmt: str, seed: int) -> Sample:
    """A file for an extra demo route, made by that route's example and checked against its model."""
    args = ("--kind", DEMO_ROUTES[route], "--rows", str(rows), "--format", fmt, "--seed", str(seed))
    return Sample(name, args, model=route, check=True)


# Sizes chosen so the demo shows both output paths: small outputs travel inline in the result message,
# the 40,000-row file's output (several MB) goes through the scoring service's results container.
SAMPLES = (
    Sample("customers-small.csv", ("--rows", "20", "--format", "csv", "--seed", "1"), check=True),
    Sample("customers-medium.jsonl", ("--rows", "2000", "--format", "jsonl", "--seed", "2"), check=True),
    Sample("customers-large.csv", ("--rows", "40000", "--format", "csv", "--seed", "3")),
    Sample("customers-compressed.jsonl.gz", ("--rows", "5000", "--format", "jsonl", "--gzip", "--seed", "4")),
    Sample("customers-some-bad-rows.csv", ("--rows", "30", "--format", "csv", "--seed", "5", "--bad", "some-bad-rows")),
    Sample(
        "bad-missing-column.csv", ("--rows", "10", "--format", "csv", "--seed", "6", "--bad", "missing-column"), True
    ),
    Sample("bad-not-tabular.jsonl", ("--rows", "10", "--format", "jsonl", "--bad", "not-tabular"), True),
    # the extra routes: an iris classifier with string labels and a diabetes regressor
    route_sample("multiclass", "iris-flowers.csv", rows=150, fmt="csv", seed=7),
    route_sample("multiclass", "iris-flowers.jsonl", rows=60, fmt="jsonl", seed=8),
    route_sample("regression", "diabetes-patients.csv", rows=300, fmt="csv", seed=9),
    route_sample("regression", "diabetes-patients.jsonl", rows=80, fmt="jsonl", seed=10),
    route_sample("multiclass", "iris-flowers.parquet", rows=90, fmt="parquet", seed=11),
    route_sample("regression", "diabetes-patients.parquet", rows=99, fmt="parquet", seed=12),
)  # fmt: skip


def make_samples(stack: LocalStack, out_dir: Path, samples: tuple[Sample, ...] = SAMPLES) -> list[tuple[Path, Sample]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    log = stack.settings.log_dir / "demo-samples.log"
    made = []
    with log.open("ab") as out:
        for sample in samples:
            path = out_dir / sample.name
            done = subprocess.run(
                [sys.executable, "-m", "scoring.sample", *sample.args, "--out", str(path)],
                cwd=stack.settings.repo,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
            if done.returncode != 0 or not path.is_file():
                lines = "\n".join(f"    {line}" for line in procs.tail(log, 15))
                raise StackError(
                    f"python -m scoring.sample could not write {sample.name}; last lines of {log}:\n{lines}"
                )
            made.append((path, sample))
    return made


def count_rows(data: bytes, name: str) -> int:
    """Data rows in an output file (CSV: lines after the header; JSON Lines: non-empty lines; Parquet: metadata)."""
    detected = detect_format(name)
    if detected is not None and detected[0] == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)
    if detected is not None and detected[1] == "gzip":
        data = gzip.decompress(data)
    lines = [line for line in data.splitlines() if line.strip()]
    if detected is not None and detected[0] == "csv":
        return max(len(lines) - 1, 0)
    return len(lines)


def _error_summary(raw: bytes) -> str:
    try:
        record: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "error"
    error = record.get("error") if isinstance(record, dict) else None
    code = error.get("code") if isinstance(error, dict) else (record.get("code") if isinstance(record, dict) else None)
    return f"error ({code})" if code else "error"


def rows_failed(ledger: ContainerClient, item: DemoFile) -> int | None:
    """Rows the service left out, from the function app's ledger record (None when it cannot be read)."""
    request_id = derive_request_id(INPUT_CONTAINER, item.blob_name, item.etag)
    try:
        record = json.loads(ledger.download_blob(f"requests/{request_id}.json").readall())
    except (ResourceNotFoundError, ValueError):
        return None
    value = record.get("rows_failed") if isinstance(record, dict) else None
    return value if isinstance(value, int) else None


def check_one(output: ContainerClient, item: DemoFile) -> None:
    for name, is_error in ((output_blob_name(item.blob_name), False), (error_blob_name(item.blob_name), True)):
        try:
            data = output.download_blob(name).readall()
        except ResourceNotFoundError:
            continue
        item.finished_at = time.monotonic()
        item.output = f"{OUTPUT_CONTAINER}/{name}"
        if is_error:
            item.status = _error_summary(data)
        else:
            item.status = "scored"
            item.rows = count_rows(data, name)
        return


def compare_with_model(output: ContainerClient, item: DemoFile, settings: StackSettings) -> None:
    """After the run (so timings stay the pipeline's): the output against the model's in-process predictions."""
    model_dir = model_dir_of(settings, item.model)
    if not item.check or item.status != "scored" or model_dir is None:
        return
    name = output_blob_name(item.blob_name)
    wrong = prediction_mismatches(model_dir, item.path.read_bytes(), output.download_blob(name).readall(), name)
    item.status = f"scored, {wrong} rows differ from the model" if wrong else "scored, matches the model"


class Progress:
    """A one-line bar on a terminal; one plain line per finished file otherwise."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()

    def update(self, items: list[DemoFile], newly_done: list[DemoFile]) -> None:
        done = sum(item.done for item in items)
        elapsed = time.monotonic() - self.started
        if self.tty:
            width = 30
            filled = int(width * done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {done}/{self.total} files  {elapsed:5.1f}s")
            self.stream.flush()
        else:
            for item in newly_done:
                print(f"{done}/{self.total} {item.blob_name}: {item.status} after {elapsed:.1f}s", file=self.stream)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def print_summary(items: list[DemoFile]) -> None:
    headers = ("file", "model", "rows", "status", "seconds", "output")
    rows = []
    for item in items:
        seconds = f"{item.finished_at - item.uploaded_at:.1f}" if item.finished_at is not None else "-"
        rows.append(
            (
                item.path.name + (" (bad on purpose)" if item.expect_error else ""),
                item.model,
                "-" if item.rows is None else str(item.rows),
                item.status,
                seconds,
                item.output or "-",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _say(line: str) -> None:
    print(line, flush=True)


def run(stack: LocalStack, timeout: float = 300.0) -> int:
    if not stack.running():
        stack = LocalStack(with_demo_routes(stack.settings, train_route_models(stack.settings, _say)), _say)
        print("starting the local stack with the model routes multiclass and regression ...", flush=True)
        stack.up()
    settings = stack.settings
    served = {DEFAULT_MODEL, *settings.model_names}
    skipped = sorted({s.model for s in SAMPLES} - served)
    if skipped:
        print(
            f"the running stack does not serve the route(s) {', '.join(skipped)}: their files are left out "
            "(`python -m devstack down`, then the demo starts the stack with them)",
            flush=True,
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_id = f"demo-{stamp}-{uuid.uuid4().hex[:6]}"
    print("writing sample files (python -m scoring.sample) ...", flush=True)
    samples = tuple(s for s in SAMPLES if s.model in served)
    made = make_samples(stack, settings.base_dir / "demo" / run_id, samples)
    items = [
        DemoFile(p, f"{run_id}/{p.name}", sample.expect_error, model=sample.model, check=sample.check)
        for p, sample in made
    ]

    with BlobServiceClient.from_connection_string(settings.storage_connection_string) as service:
        inbox = service.get_container_client(INPUT_CONTAINER)
        outbox = service.get_container_client(OUTPUT_CONTAINER)
        ledger = service.get_container_client(LEDGER_CONTAINER)
        print(f"uploading {len(items)} files to {INPUT_CONTAINER}/{run_id}/ (session {run_id})", flush=True)
        for item in items:
            detected = detect_format(item.path.name)
            content_type = detected[0].content_type if detected else "application/octet-stream"
            with item.path.open("rb") as fh:
                uploaded = inbox.upload_blob(
                    item.blob_name,
                    fh,
                    overwrite=True,
                    metadata={"session_id": run_id, "model": item.model},
                    content_settings=ContentSettings(content_type=content_type),
                )
            item.etag = str(uploaded.get_blob_properties().etag)
            item.uploaded_at = time.monotonic()

        progress = Progress(len(items), sys.stdout)
        deadline = time.monotonic() + timeout
        while not all(item.done for item in items) and time.monotonic() < deadline:
            newly: list[DemoFile] = []
            for item in items:
                if not item.done:
                    check_one(outbox, item)
                    if item.done:
                        newly.append(item)
            progress.update(items, newly)
            time.sleep(POLL_SECONDS)
        progress.close()
        for item in items:
            compare_with_model(outbox, item, settings)
            left_out = rows_failed(ledger, item) if item.status == "scored" else None
            if left_out:
                item.status = f"scored, {left_out} bad rows left out"

    for item in items:
        if not item.done:
            item.status = f"no result after {timeout:.0f}s"
    print()
    print_summary(items)
    if settings.status_url():
        print(f"\nstatus page (files in flight, timelines, errors, queues): {settings.status_url()}")
    failed = [item for item in items if not item.as_expected]
    if failed:
        print(
            f"\n{len(failed)} file(s) did not end as expected; see `python -m devstack logs functions` and "
            "`python -m devstack logs scoring`",
            file=sys.stderr,
        )
        return 1
    print(f"\nall {len(items)} files ended as expected; outputs are in the {OUTPUT_CONTAINER} container")
    return 0
