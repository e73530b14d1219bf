"""The whole pipeline on an isolated local stack: files dropped into ``input`` until their output is written.

Each figure is a ratio against a baseline measured in the same run (the baselines run after the stack is
stopped, so they do not compete with it for the CPU):

* one large CSV (default 1,000,000 rows, made by ``python -m scoring.sample``): rows/s from the end of the
  upload until the output blob exists, vs a plain pandas script on the same file from local disk
  (``read_csv`` + ``predict_proba`` + ``to_csv``; goal >= 1.0x);
* many small files (default 1,000 of 100 rows) dropped as fast as ``BURST_UPLOADERS`` threads can, as a client
  dropping many files would (one uploader took longer to drop the files than the pipeline to score them on a busy
  machine): files/s from the first drop to the last output, and the upload time apart, vs the same
  pandas script looping over the files; and drop -> output latency p50/p95 (goal p50 <= 500 ms) in that
  burst (where files queue, so latency there measures throughput), in a steady stream below capacity
  (default 200 files at 5 files/s; goal p50 <= 300 ms, p95 <= 600 ms) and for files dropped one at a time into an
  idle pipeline, with the time split into stages from the request ledger (blob scan -> submitted -> accepted by
  the endpoint -> scored -> written). An output counts as written when Azurite's access log shows the write
  answered (:mod:`benchmarks.output_log`: seen within 10 ms, without asking Azurite anything; a listing confirms
  every outcome at the end of a phase);
* the function app runs with ``RECONCILE_CHECK_OUTPUTS=false`` as the Bicep sets it for Azure Storage (a success is
  not checked again a deadline later), or with ``true`` as the local stack runs with ``--check-outputs``;
* every phase runs into an input container already holding ``--prefill`` blobs (default 10,000), uploaded
  concurrently before the functions host first starts. The function app runs with ``BLOB_TRIGGER_SOURCE=EventGrid``
  as in Azure, so, as an Event Grid subscription would, the host never runs for blobs written before it first
  started: they cost the pipeline nothing but the safety-net listings (the run checks that none was scored);
* peak RSS (VmHWM, whole process tree: gunicorn's workers count) of each stack process during the large
  run, vs the same during a run of a file a tenth the size (goal: about 1.0x, bounded by chunk size);
* the cost of each small file in the bursts and the paced run: storage operations by container and kind,
  Service Bus operations, endpoint calls and CPU seconds of each service, counted by the services
  themselves (:mod:`benchmarks.costs`), and apart from them what ``reconcile`` does for each of a phase's files a
  result deadline later (one real pass run as if the deadline had passed) and what a pass costs when nothing is due
  (:mod:`benchmarks.reconcile_cost`).

    python -m benchmarks.pipeline_bench [--rows N] [--files N] [--file-rows N] [--sequential N] [--prefill N] [--quick]

Results go to ``benchmarks/results/pipeline.json``; input files are cached in ``benchmarks/data/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from benchmarks.costs import CostMeter, cost_lines
from benchmarks.figures import save
from benchmarks.output_log import LOG_POLL_SECONDS, LoggedOutputs
from benchmarks.reconcile_cost import reconcile_lines, reconcile_pass
from devstack.functions_host.blob_listing import ContainerLister
from devstack.stack import LocalStack
from scoring.examples.churn.sample import frame
from scoring.examples.files import to_csv
from shared.contracts import derive_request_id
from tests.support.flow import (
    INPUT,
    MODEL_DIR,
    OUTPUT,
    REPO,
    OutputWatcher,
    Seen,
    cpu_seconds,
    isolated_settings,
    load_average,
    peak_rss_kib,
    process_tree,
    service_pids,
)

logger = logging.getLogger(__name__)

RESULTS = REPO / "benchmarks" / "results" / "pipeline.json"
DATA = REPO / "benchmarks" / "data"
GOALS = {"large_ratio": 1.0, "latency_p50_ms": 500.0, "memory_ratio": 1.0, "paced_p50_ms": 300.0, "paced_p95_ms": 600.0}
PREFILL_PREFIX = "prefill/"
PREFILL_THREADS = 8  # the SDK keeps 10 connections per host in its pool
# Threads dropping a burst's files: one uploader spent 9.7 s of a 18.6 s burst of 200 files dropping them at
# load 10 (the pipeline was waiting for files), so a burst measured its uploader; four keep it well ahead.
BURST_UPLOADERS = 4
LEDGER = "ledger"
# Seconds a phase waits after its outputs for the messages of its files to be completed (the writer records the
# file in the ledger after its output, and completes the result after that).
SETTLE_TIMEOUT = 60.0


def ensure_model() -> None:
    if not (MODEL_DIR / "MLmodel").exists():
        subprocess.run([sys.executable, "-m", "scoring.train", "--out", str(MODEL_DIR)], cwd=REPO, check=True)


def sample_file(rows: int) -> Path:
    path = DATA / f"churn-{rows}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "scoring.sample", "--rows", str(rows), "--seed", "103", "--out", str(path)]
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _ts(text: str | None) -> float | None:
    return None if not text else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ledger_stages(ledger: ContainerClient, request_id: str, dropped_at: float) -> dict[str, float] | None:
    """Milliseconds spent in each stage, from the ledger's timestamps (all clocks are this machine's)."""
    try:
        record = json.loads(ledger.download_blob(f"requests/{request_id}.json").readall())
    except ResourceNotFoundError:
        return None
    submitted, accepted = _ts(record.get("submitted_at")), _ts(record.get("accepted_at"))
    completed, written = _ts(record.get("completed_at")), _ts(record.get("updated_at"))
    if None in (submitted, accepted, completed, written):
        return None
    assert submitted and accepted and completed and written
    return {
        "blob scan -> submitted": (submitted - dropped_at) * 1000,
        "submitted -> accepted": (accepted - submitted) * 1000,
        "accepted -> scored": (completed - accepted) * 1000,
        "scored -> writer": (written - completed) * 1000,
    }


def _stage_medians(stages: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in stages) for key in stages[0]} if stages else {}


class Dropper:
    """Uploads files and records when each upload finished (wall clock and monotonic)."""

    def __init__(self, service: BlobServiceClient, stack: LocalStack) -> None:
        self.stack = stack
        self.inputs = service.get_container_client(INPUT)
        self.outputs = service.get_container_client(OUTPUT)
        self.ledger = service.get_container_client(LEDGER)
        self.dropped: dict[str, tuple[float, float, str]] = {}  # name -> (wall, monotonic, request id)

    def drop(self, name: str, data: bytes, session: str | None = None) -> None:
        metadata = {"session_id": session} if session else None
        blob = self.inputs.get_blob_client(name)
        etag = blob.upload_blob(data, overwrite=True, max_concurrency=4, metadata=metadata)["etag"]
        self.dropped[name] = (time.time(), time.monotonic(), derive_request_id(INPUT, name, etag))

    def watch(self, names: list[str], prefixes: list[str], **options: Any) -> tuple[OutputWatcher, LoggedOutputs]:
        """A listing watcher for ``names`` and the access-log reader that feeds it (made before the drops)."""
        watcher = OutputWatcher(self.outputs, names, prefixes, **options)
        settings = self.stack.settings
        log = LoggedOutputs(settings.azurite_log, urlsplit(settings.blob_endpoint).path, watcher, prefixes)
        return watcher, log


def output_seen(watcher: OutputWatcher, log: LoggedOutputs, name: str, timeout: float) -> Seen:
    """When ``name``'s output was first seen written; raises if none comes in time or an error record does."""
    if log.wait([name], timeout):
        raise RuntimeError(f"{name}: no output after {timeout:.0f} s")
    seen = watcher.outcomes.first(name)
    assert seen is not None
    if seen.kind != "output":
        raise RuntimeError(f"{name}: error record {watcher.error_record(name)['error']}")
    return seen


def small_files(count: int, rows: int) -> list[bytes]:
    data = frame(count * rows, seed=104)
    return [to_csv(data.iloc[i * rows : (i + 1) * rows]) for i in range(count)]


def run_sequential(dropper: Dropper, files: list[bytes], timeout: float) -> dict[str, Any]:
    """One file at a time into an idle pipeline: the latency floor."""
    prefix = f"seq-{uuid.uuid4().hex[:6]}/"
    meter = CostMeter(dropper.stack)
    before = meter.snapshot()
    latencies = []
    for i, data in enumerate(files):
        name = f"{prefix}{i:04d}.csv"
        watcher, log = dropper.watch([name], [prefix, f"errors/{prefix}"])
        dropper.drop(name, data)
        seen = output_seen(watcher, log, name, timeout)
        latencies.append((seen.at - dropper.dropped[name][1]) * 1000)
    meter.settled(before, 2 * len(files), timeout=SETTLE_TIMEOUT)  # the ledger is written after the output
    stages = [
        split
        for name, (wall, _, request_id) in dropper.dropped.items()
        if name.startswith(prefix) and (split := ledger_stages(dropper.ledger, request_id, wall)) is not None
    ]
    return {
        "files": len(files),
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 0.95),
        "stages_p50_ms": _stage_medians(stages),
    }


def run_burst(
    dropper: Dropper,
    stack: LocalStack,
    files: list[bytes],
    timeout: float,
    shared_session: bool,
    rate: float | None = None,
) -> dict[str, Any]:
    """All files as fast as ``BURST_UPLOADERS`` threads can, or ``rate`` files per second from one thread; in one
    session (as the CLI uploads) or each in its own (named in its metadata, as many clients of one file each)."""
    prefix = f"burst-{uuid.uuid4().hex[:6]}/"
    session = prefix.rstrip("/") if shared_session else None
    names = [f"{prefix}{i:05d}.csv" for i in range(len(files))]
    # Outputs are seen in Azurite's access log, read on a thread of its own while the files are uploaded. A
    # fallback listing takes only the groups of ten names that still wait (names end in a 5-digit index + ".csv").
    group = (lambda name: name[: -len("0.csv")]) if rate else None
    watcher, log = dropper.watch(names, [prefix, f"errors/{prefix}"], pending_group=group)
    meter = CostMeter(stack)
    counted = meter.snapshot()
    cpu_before = cpu_seconds(stack)
    dropping = threading.Event()
    follower = threading.Thread(target=log.follow_while, args=(dropping,), daemon=True)
    dropping.set()
    follower.start()
    started = time.monotonic()
    try:
        if rate:
            for i, (name, data) in enumerate(zip(names, files, strict=True)):
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
                dropper.drop(name, data, session or name)
        else:
            with ThreadPoolExecutor(BURST_UPLOADERS) as pool:
                list(pool.map(lambda item: dropper.drop(*item, session or item[0]), zip(names, files, strict=True)))
    finally:
        dropping.clear()
        follower.join()
    upload_s = time.monotonic() - started
    missing = log.wait(names, timeout)
    finished = time.monotonic()
    cpu_after = cpu_seconds(stack)
    settled = meter.settled(counted, 2 * len(names), timeout=SETTLE_TIMEOUT)
    cost = meter.per_file(counted, len(names))  # the benchmark's own requests are shown apart
    unconfirmed = log.unconfirmed(names)  # one listing: every outcome the log showed is there
    outcomes = watcher.outcomes
    errors = [n for n in names if n in outcomes.errors]
    latencies = [(outcomes.outputs[n].at - dropper.dropped[n][1]) * 1000 for n in names if n in outcomes.outputs]
    stages = [
        s
        for n in names[:: max(1, len(names) // 200)]
        if n in outcomes.outputs and (s := ledger_stages(dropper.ledger, dropper.dropped[n][2], dropper.dropped[n][0]))
    ]
    return {
        "files": len(names),
        "sessions": "one for all files" if shared_session else "one per file",
        "rate": rate,
        "cpu_share": {k: (cpu_after[k] - cpu_before.get(k, 0.0)) / (finished - started) for k in cpu_after},
        "upload_s": upload_s,
        "uploaders": 1 if rate else BURST_UPLOADERS,
        "total_s": finished - started,
        "files_per_s": len(latencies) / (finished - started),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p95_ms": percentile(latencies, 0.95) if latencies else None,
        "missing": len(missing),
        "error_records": len(errors),
        "stages_p50_ms": _stage_medians(stages),
        "log_poll_s": LOG_POLL_SECONDS,
        "seen_in_log": log.from_log,
        "seen_by_listing_only": len(log.from_listing),
        "unconfirmed_by_listing": len(unconfirmed),
        "cost_per_file": cost,
        "all_messages_completed": settled,
    }


def reconcile_passes(stack: LocalStack, files: int) -> dict[str, Any]:
    """Reconcile's cost for a phase's files: a pass as if the deadline had passed, then one with nothing due."""
    return {
        "due": reconcile_pass(stack, files=files, past_deadline=True),
        "idle": reconcile_pass(stack, files=files, past_deadline=False),
    }


def prefill(service: BlobServiceClient, count: int) -> dict[str, Any]:
    """Uploads ``count`` tiny blobs into ``input`` concurrently (before the functions host starts)."""
    inputs = service.get_container_client(INPUT)
    started = time.monotonic()
    with ThreadPoolExecutor(PREFILL_THREADS) as pool:
        list(pool.map(lambda i: inputs.upload_blob(f"{PREFILL_PREFIX}{i:06d}.csv", b"id\n1\n"), range(count)))
    return {"blobs": count, "upload_s": time.monotonic() - started}


def prefilled_scored(service: BlobServiceClient) -> int:
    """Outputs and error records of the pre-filled blobs: 0 when the trigger left them alone, as Event Grid would."""
    outputs = service.get_container_client(OUTPUT)
    found = 0
    for prefix in (PREFILL_PREFIX, f"errors/{PREFILL_PREFIX}"):
        with contextlib.closing(ContainerLister(outputs, prefix=prefix)) as lister:
            found += sum(1 for _ in lister)
    return found


def reset_peaks(stack: LocalStack) -> None:
    """Resets VmHWM of every stack process (writing 5 to clear_refs), so peaks belong to the next run."""
    for pid in service_pids(stack).values():
        for member in process_tree(pid):
            try:
                Path(f"/proc/{member}/clear_refs").write_text("5")
            except OSError as exc:
                logger.warning("could not reset the peak RSS of pid %s: %s", member, exc)


def peaks(stack: LocalStack) -> dict[str, dict[str, int]]:
    result = {}
    for name, pid in service_pids(stack).items():
        values = [v for v in (peak_rss_kib(p) for p in process_tree(pid)) if v is not None]
        result[name] = {"processes": len(values), "max_kib": max(values, default=0), "sum_kib": sum(values)}
    return result


def run_large(dropper: Dropper, stack: LocalStack, path: Path, rows: int, timeout: float) -> dict[str, Any]:
    name = f"large-{uuid.uuid4().hex[:6]}/{path.name}"
    data = path.read_bytes()
    watcher, log = dropper.watch([name], [name.split("/")[0], f"errors/{name.split('/')[0]}"])
    reset_peaks(stack)
    started = time.monotonic()
    dropper.drop(name, data)
    dropped = time.monotonic()
    del data
    seen = output_seen(watcher, log, name, timeout)
    elapsed = seen.at - dropped
    wall, _, request_id = dropper.dropped[name]
    # The writer may still touch the blob (Copy Blob, then its content type) until the ledger says succeeded.
    deadline = time.monotonic() + 60
    while _state(dropper.ledger, request_id) != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
    size = dropper.outputs.get_blob_client(name).get_blob_properties().size
    lines = sum(chunk.count(b"\n") for chunk in dropper.outputs.download_blob(name).chunks())
    if lines != rows + 1:
        raise RuntimeError(f"{name}: {lines - 1} rows in the output, {rows} expected")
    return {
        "rows": rows,
        "input_bytes": path.stat().st_size,
        "output_bytes": size,
        "upload_s": dropped - started,
        "drop_to_output_s": elapsed,
        "rows_per_s": rows / elapsed,
        "stages_ms": ledger_stages(dropper.ledger, request_id, wall),
        "peak_rss": peaks(stack),
    }


def _state(ledger: ContainerClient, request_id: str) -> str | None:
    try:
        state: str = json.loads(ledger.download_blob(f"requests/{request_id}.json").readall())["state"]
    except ResourceNotFoundError:
        return None
    return state


def pandas_script(paths: list[Path]) -> float:
    """Seconds a plain script takes: read_csv, predict_proba, to_csv with the two added columns."""
    import mlflow.sklearn
    import pandas as pd

    pipeline = mlflow.sklearn.load_model(str(MODEL_DIR))
    positive = list(pipeline.classes_).index("Yes")
    started = time.perf_counter()
    for path in paths:
        data = pd.read_csv(path)
        proba = pipeline.predict_proba(data)[:, positive]
        data["prediction"] = pd.Series(proba > 0.5).map({True: "Yes", False: "No"})
        data["probability"] = proba.round(6)
        data.to_csv(io.StringIO() if len(data) < 10_000 else path.with_suffix(".scored.csv"), index=False)
    elapsed = time.perf_counter() - started
    for path in paths:
        path.with_suffix(".scored.csv").unlink(missing_ok=True)
    return elapsed


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_model()
    large, medium = sample_file(args.rows), sample_file(max(1000, args.rows // 10))
    small = small_files(max(args.files, args.own_session_files, args.paced_files) + args.sequential, args.file_rows)
    base = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    # Event Grid source, as in Azure: the host never runs for the blobs pre-filled before it first starts.
    # Successes not checked again a deadline later, as the Bicep sets for Azure Storage, unless --check-outputs.
    check = "true" if args.check_outputs else "false"
    settings = isolated_settings(base, {"BLOB_TRIGGER_SOURCE": "EventGrid", "RECONCILE_CHECK_OUTPUTS": check})
    stack = LocalStack(replace(settings, storage_access_log=True), report=lambda line: logger.info("%s", line))
    figures: dict[str, Any] = {"load_avg_before": load_average()}
    try:
        stack.up(["azurite"])
        with BlobServiceClient.from_connection_string(stack.settings.storage_connection_string) as service:
            figures["prefill"] = prefill(service, args.prefill)
            stack.up()
            dropper = Dropper(service, stack)
            run_sequential(dropper, small[:2], args.timeout)  # warm-up: first imports, connections, containers
            figures["sequential"] = run_sequential(dropper, small[2 : 2 + args.sequential], args.timeout)
            burst = small[args.sequential :]
            # The marks the warm-up and the files dropped one at a time left: each burst's pass then sees its own.
            figures["sequential"]["reconcile"] = reconcile_pass(stack, files=2 + args.sequential, past_deadline=True)
            figures["burst"] = run_burst(dropper, stack, burst[: args.files], args.timeout, shared_session=True)
            figures["burst"]["reconcile"] = reconcile_passes(stack, args.files)
            figures["burst_own_sessions"] = run_burst(
                dropper, stack, burst[: args.own_session_files], args.timeout, shared_session=False
            )
            figures["burst_own_sessions"]["reconcile"] = reconcile_passes(stack, args.own_session_files)
            figures["paced"] = run_burst(
                dropper, stack, burst[: args.paced_files], args.timeout, shared_session=False, rate=args.paced_rate
            )
            figures["paced"]["reconcile"] = reconcile_passes(stack, args.paced_files)
            figures["medium"] = run_large(dropper, stack, medium, max(1000, args.rows // 10), args.timeout)
            figures["large"] = run_large(dropper, stack, large, args.rows, args.timeout)
            figures["prefill"]["scored"] = prefilled_scored(service)
        figures["load_avg_during"] = load_average()
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        paths = []
        for i, data in enumerate(small[args.sequential :][: args.files]):
            paths.append(Path(tmp) / f"{i:05d}.csv")
            paths[-1].write_bytes(data)
        figures["pandas_small_files_s"] = pandas_script(paths)
    figures["pandas_large_s"] = pandas_script([large])
    figures["pandas_large_rows_per_s"] = args.rows / figures["pandas_large_s"]
    figures["pandas_files_per_s"] = args.files / figures["pandas_small_files_s"]
    figures["large"]["ratio_vs_pandas"] = figures["large"]["rows_per_s"] / figures["pandas_large_rows_per_s"]
    for key in ("burst", "burst_own_sessions", "paced"):
        figures[key]["ratio_vs_pandas"] = figures[key]["files_per_s"] / figures["pandas_files_per_s"]
    figures["memory_ratio"] = {
        name: figures["large"]["peak_rss"][name]["sum_kib"] / max(1, figures["medium"]["peak_rss"][name]["sum_kib"])
        for name in figures["large"]["peak_rss"]
    }
    figures["goals"] = GOALS
    figures["machine"] = {"cpus": os.cpu_count(), "load_avg_after": load_average()}
    figures["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


def table(f: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Rows of (measure, pipeline, baseline, ratio, goal) for the combined table."""
    lg, md, bu, sq, ob = f["large"], f["medium"], f["burst"], f["sequential"], f["burst_own_sessions"]
    pc = f["paced"]
    rows = [
        (f"{lg['rows']:,}-row CSV: rows/s drop -> output", f"{lg['rows_per_s']:,.0f}",
         f"pandas script {f['pandas_large_rows_per_s']:,.0f}", f"{lg['ratio_vs_pandas']:.2f}x", ">= 1.0x"),
        (f"{bu['files']} small files, one session: files/s", f"{bu['files_per_s']:,.1f}",
         f"pandas loop {f['pandas_files_per_s']:,.1f}", f"{bu['ratio_vs_pandas']:.2f}x", ""),
        ("  latency in that burst p50 / p95 (ms)", f"{bu['p50_ms']:,.0f} / {bu['p95_ms']:,.0f}", "", "",
         "p50 <= 500 ms"),
        (f"{ob['files']} small files, one session each: files/s", f"{ob['files_per_s']:,.1f}",
         f"pandas loop {f['pandas_files_per_s']:,.1f}", f"{ob['ratio_vs_pandas']:.2f}x", ""),
        ("  latency in that burst p50 / p95 (ms)", f"{ob['p50_ms']:,.0f} / {ob['p95_ms']:,.0f}", "", "",
         "p50 <= 500 ms"),
        (f"{pc['files']} small files at {pc['rate']:g} files/s, one session each, into {_held(f)}: p50 / p95 (ms)",
         f"{pc['p50_ms']:,.0f} / {pc['p95_ms']:,.0f}", "",
         f"{GOALS['paced_p50_ms'] / pc['p50_ms']:.2f}x / {GOALS['paced_p95_ms'] / pc['p95_ms']:.2f}x of goal",
         "p50 <= 300, p95 <= 600 ms"),
        (f"  one file at a time p50 / p95 (ms, n={sq['files']})", f"{sq['p50_ms']:,.0f} / {sq['p95_ms']:,.0f}", "",
         f"{500 / sq['p50_ms']:.2f}x of goal", "p50 <= 500 ms"),
    ]  # fmt: skip
    for key in ("burst", "burst_own_sessions", "paced"):
        if cost := f[key].get("cost_per_file"):  # absent from figures of runs before it was counted
            rows.append((f"  per file of the {f[key]['files']}: storage ops / SB requests / endpoint calls / CPU ms",
                         f"{cost['storage_ops']:.1f} / {cost['servicebus_requests']:.1f} / "
                         f"{cost['endpoint_calls']:.2f} / {cost['cpu_s_all'] * 1000:,.0f}", "", "", ""))  # fmt: skip
        if passes := f[key].get("reconcile"):
            rows.append((f"  + reconcile a deadline later, per file of the {f[key]['files']}: storage ops",
                         f"{passes['due']['storage_ops_per_file']:.2f}", "", "", ""))  # fmt: skip
    for name, ratio in f["memory_ratio"].items():
        peak = lg["peak_rss"][name]
        rows.append(
            (f"  peak RSS {name} ({peak['processes']} proc)", f"{peak['sum_kib'] / 1024:,.0f} MiB",
             f"{md['rows']:,} rows: {md['peak_rss'][name]['sum_kib'] / 1024:,.0f} MiB", f"{ratio:.2f}x", "~1.0x")
        )  # fmt: skip
    return rows


def _held(f: dict[str, Any]) -> str:
    prefilled = f.get("prefill", {}).get("blobs", 0)  # absent from figures of runs before the pre-fill
    return f"a container already holding {prefilled:,} blobs" if prefilled else "a near-empty container"


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    header = ("measure", "measured", "baseline (same run)", "ratio", "goal")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(5)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


def print_details(f: dict[str, Any]) -> None:
    if pre := f.get("prefill"):
        print(f"input held {pre['blobs']:,} blobs before the host started (uploaded in {pre['upload_s']:.1f} s, "
              f"{PREFILL_THREADS} at a time); outputs or error records of them: {pre['scored']}")  # fmt: skip
    print(f"idle pipeline, median per stage (ms): {_fmt(f['sequential']['stages_p50_ms'])}")
    for key in ("burst", "burst_own_sessions", "paced"):
        b = f[key]
        cpu = ", ".join(f"{k} {v:.0%}" for k, v in b["cpu_share"].items())
        short = "" if b.get("all_messages_completed", True) else "NOT ALL MESSAGES COMPLETED IN TIME (counts short); "
        print(f"burst of {b['files']} ({b['sessions']}), median per stage (ms): {_fmt(b['stages_p50_ms'])}; "
              f"uploads took {b['upload_s']:.1f} s ({b.get('uploaders', 1)} threads); missing {b['missing']}, "
              f"error records {b['error_records']}; outcomes seen in the access log {b.get('seen_in_log', '-')}, "
              f"by a listing only {b.get('seen_by_listing_only', '-')}, not there in the last listing "
              f"{b.get('unconfirmed_by_listing', '-')}; "
              f"{short}CPU (share of one core): {cpu}")  # fmt: skip
        for line in cost_lines(
            f"  cost of {b['files']} ({b['sessions']}{', paced' if b['rate'] else ''})", b["cost_per_file"]
        ):
            print(line)
        if passes := b.get("reconcile"):  # absent from figures of runs before it was counted
            for line in reconcile_lines(passes["due"], passes["idle"]):
                print(line)
    print(
        f"latency: upload answered -> output (or error record) write answered, seen in Azurite's access log read every"
        f" {LOG_POLL_SECONDS} s; a listing confirms each phase's outcomes"
    )
    lg = f["large"]
    print(f"large file: upload {lg['upload_s']:.1f} s, drop -> output {lg['drop_to_output_s']:.1f} s, stages (ms): "
          f"{_fmt(lg['stages_ms'] or {})}")  # fmt: skip
    print(f"load average before / during / after: {f['load_avg_before']} / {f['load_avg_during']} / "
          f"{f['machine']['load_avg_after']} on {f['machine']['cpus']} CPUs")  # fmt: skip


def _fmt(stages: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:,.0f}" for k, v in stages.items())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_bench", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the large CSV")
    p.add_argument("--files", type=int, default=1000, help="small files in the burst")
    p.add_argument("--file-rows", type=int, default=100, help="rows per small file")
    p.add_argument("--sequential", type=int, default=20, help="small files dropped one at a time")
    p.add_argument("--own-session-files", type=int, default=100, help="small files dropped each in its own session")
    p.add_argument("--paced-files", type=int, default=200, help="small files dropped at --paced-rate")
    p.add_argument("--paced-rate", type=float, default=5.0, help="files per second of the paced run")
    p.add_argument("--prefill", type=int, default=10_000, help="blobs in input before the host first starts")
    p.add_argument(
        "--check-outputs",
        action="store_true",
        help="RECONCILE_CHECK_OUTPUTS=true, as the local stack runs (default: false, as in Azure)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for any one phase")
    p.add_argument("--quick", action="store_true", help="a small smoke run (50,000 rows, 50 files)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def quick(args: argparse.Namespace) -> argparse.Namespace:
    if args.quick:
        args.rows, args.files, args.sequential, args.own_session_files, args.paced_files = 50_000, 50, 5, 16, 20
        args.timeout = min(args.timeout, 300.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = quick(parser().parse_args(argv))
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    figures = run(args)
    print_table(table(figures))
    print_details(figures)
    save(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
