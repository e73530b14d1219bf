"""Fault injection: ``kill -9`` each stack service in turn while files flow, then check nothing was lost.

``python -m tests.support.chaos [--files 300] [--rows 100] [--pace 0.2] [--burst 300] [--burst-rows 20]
[--repeat N] [--blob-trigger-source EventGrid]`` (``make chaos``, ``make chaos REPEAT=10``,
``make chaos CHAOS_ARGS="--blob-trigger-source EventGrid"``: the blob trigger as Azure's Flex plan and the pipeline
benchmark run it, its receipts kept by the local host instead of in Azurite)

An isolated local stack (free ports, temporary base dir) runs with short deadlines so ``reconcile``
re-submits requests a killed service lost: ``RESULT_DEADLINE_MINUTES=1``, a reconcile timer every 10 s,
quick scoring retries. While an uploader drops CSV files into ``input``, the scoring server (its whole
process group: gunicorn and its workers), the functions host, the Service Bus emulator and Azurite are
killed with SIGKILL one after the other and restarted with ``LocalStack.up([name])``. The files carry
``session_id`` metadata spread over a few sessions, as from several clients.

A burst of small files (``--burst``, default 300 of 20 rows, in one session as one client uploads a batch) is
dropped as fast as one uploader can just before the first kill, so the paths many small files take (batches of
requests, one session's results written together) are in flight while the scoring server and then the functions
host are killed. The burst is judged and reported on its own, by the same rules.

Afterwards every input must have exactly one output whose rows match the MLflow model loaded in this
process (prediction and probability, row by row), or exactly one error record; none missing, none with
both. The counts are printed; the exit status is 0 only when that holds.

Azurite keeps its metadata in LokiJS databases that are saved to disk every 5 seconds (``autosaveInterval:
5000`` in its blob, queue and table metadata stores), so a SIGKILL loses the writes it acknowledged in the
last few seconds: uploaded inputs, outputs, ledger records, trigger receipts. The pipeline's own state
recovers from that (a lost receipt re-fires the trigger, a lost ledger update or output is redone by
``reconcile``, which keeps a request's in-flight marker until it has seen the output the record names, or
by a re-delivered message), but a lost *input* is gone before the
pipeline could know of it. So after Azurite restarts, the uploader checks every file it uploaded and uploads
again the ones that are missing, as a client that verifies its uploads would; those are counted and shown,
not hidden. Outputs that were seen and later disappeared are counted too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devstack.stack import LocalStack
from scoring.examples.churn.sample import frame
from scoring.examples.files import to_csv
from tests.support.flow import (
    INPUT,
    OUTPUT,
    OutputWatcher,
    ReferenceModel,
    isolated_settings,
    load_average,
    secrets_in_logs,
)

logger = logging.getLogger(__name__)

CHAOS_SETTINGS = {
    "RESULT_DEADLINE_MINUTES": "1",
    "RECONCILE_SCHEDULE": "*/10 * * * * *",
    "MAX_RESUBMITS": "5",
    "SCORING_RETRY_BASE_SECONDS": "1",
    "SCORING_RETRY_MAX_SECONDS": "10",
    "SCORING_CONNECT_TIMEOUT_SECONDS": "2",
}
KILL_ORDER = ("scoring", "functions", "servicebus", "azurite")
RETRY_PAUSE = 0.5
PROGRESS_SECONDS = 30.0
LEDGER = "ledger"
SESSIONS = 8  # host.json maxConcurrentSessions: every session receiver of the writer stays busy
BURST_SEED = 106


@dataclass
class ChaosReport:
    files: int
    outputs_ok: int = 0
    outputs_wrong: dict[str, list[str]] = field(default_factory=dict)
    error_records: dict[str, str] = field(default_factory=dict)  # name -> code: message
    missing: list[str] = field(default_factory=list)
    both: list[str] = field(default_factory=list)
    reuploaded_after_azurite_loss: list[str] = field(default_factory=list)
    outputs_lost_after_seen: list[str] = field(default_factory=list)  # and not written again
    outputs_lost_then_recreated: list[str] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    secrets_in_logs: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)  # without an outcome when the settle time ran out
    stuck: list[str] = field(default_factory=list)  # what the ledger said about those
    seconds: float = 0.0
    load_avg: list[float] = field(default_factory=list)
    burst: ChaosReport | None = None  # the burst of small files, judged on its own

    @property
    def ok(self) -> bool:
        accounted = self.outputs_ok + len(self.error_records)
        return (
            accounted == self.files
            and not self.outputs_wrong
            and not self.missing
            and not self.both
            and not self.secrets_in_logs
            and (self.burst is None or self.burst.ok)
        )

    def outcome_lines(self, what: str) -> list[str]:
        return [
            f"{what}: {self.files}; outputs matching the model: {self.outputs_ok}; "
            f"outputs that do not match: {len(self.outputs_wrong)}; error records: {len(self.error_records)}; "
            f"missing: {len(self.missing)}; output and error record both: {len(self.both)}",
            f"  inputs Azurite lost on kill -9 (re-uploaded by the client): {len(self.reuploaded_after_azurite_loss)}; "
            f"outputs lost with Azurite after they were seen: {len(self.outputs_lost_then_recreated)} written "
            f"again by reconcile, {len(self.outputs_lost_after_seen)} not",
        ]

    def lines(self) -> list[str]:
        out = self.outcome_lines("files dropped")
        if self.burst is not None:
            out += self.burst.outcome_lines("burst of small files dropped at once (one session)")
        for kill in self.kills:
            out.append(
                f"  killed {kill['service']} (pid {kill['pid']}, {kill['processes']} processes) after "
                f"{kill['uploaded']} uploads; back in {kill['restart_s']:.1f} s"
            )
        for group in (self, self.burst):
            if group is not None:
                out += [f"  wrong output {n}: {p}" for n, p in list(group.outputs_wrong.items())[:10]]
                out += [f"  error record {n}: {e}" for n, e in list(group.error_records.items())[:10]]
                out += [f"  missing {n}" for n in group.missing[:10]]
                out += [f"  both {n}" for n in group.both[:10]]
        out += [f"  secret in log: {line}" for line in self.secrets_in_logs[:10]]
        out.append(f"{'PASS' if self.ok else 'FAIL'} in {self.seconds:.0f} s; load average {self.load_avg}")
        return out


class Uploader(threading.Thread):
    """Drops the files at a steady pace, retrying through outages; remembers what it uploaded."""

    def __init__(self, connection_string: str, files: dict[str, bytes], pace: float, sessions: int = SESSIONS) -> None:
        super().__init__(name="chaos-uploader", daemon=True)
        self._connection_string = connection_string
        self._files = files
        self._pace = pace
        self.sessions = sessions
        self.uploaded: list[str] = []
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with BlobServiceClient.from_connection_string(self._connection_string, retry_total=0) as service:
                inputs = service.get_container_client(INPUT)
                for name, data in self._files.items():
                    upload = partial(
                        inputs.upload_blob, name, data, overwrite=True, metadata=metadata(name, self.sessions)
                    )
                    upload_until_done(upload)
                    with self.lock:
                        self.uploaded.append(name)
                    time.sleep(self._pace)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def count(self) -> int:
        with self.lock:
            return len(self.uploaded)


def upload_until_done(call: Callable[[], object], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except AzureError as exc:
            if time.monotonic() > deadline:
                raise
            logger.info("storage call failed (%s); retrying", type(exc).__name__)
            time.sleep(RETRY_PAUSE)


def kill_service(stack: LocalStack, name: str) -> tuple[int, int]:
    """SIGKILL the service's whole process group; returns (pid, processes killed)."""
    from tests.support.flow import process_tree, service_pids

    pid = service_pids(stack)[name]
    members = len(process_tree(pid))
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat")
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except OSError:
            break
        time.sleep(0.05)
    return pid, members


def reupload_lost(connection_string: str, uploader: Uploader, files: dict[str, bytes]) -> list[str]:
    """After Azurite restarts: upload again the files it acknowledged but lost."""
    lost = []
    with uploader.lock:
        done = list(uploader.uploaded)
    with BlobServiceClient.from_connection_string(connection_string, retry_total=0) as service:
        inputs = service.get_container_client(INPUT)
        for name in done:
            try:
                inputs.get_blob_client(name).get_blob_properties()
            except ResourceNotFoundError:
                lost.append(name)
                again = partial(
                    inputs.upload_blob, name, files[name], overwrite=True, metadata=metadata(name, uploader.sessions)
                )
                upload_until_done(again)
    return lost


def metadata(name: str, sessions: int = SESSIONS) -> dict[str, str]:
    """Files are spread over a few reply sessions, as from several clients (each client uses one session)."""
    folder, _, stem = name.rpartition("/")
    return {"session_id": f"{folder}-s{int(stem.split('.')[0]) % sessions}"}


def make_files(count: int, rows: int, prefix: str, seed: int = 105) -> dict[str, bytes]:
    data = frame(count * rows, seed=seed)
    return {f"{prefix}{i:04d}.csv": to_csv(data.iloc[i * rows : (i + 1) * rows]) for i in range(count)}


def run(
    *,
    files: int,
    rows: int,
    pace: float,
    settle_timeout: float,
    base_dir: Path | None = None,
    quiet: bool = False,
    burst: int = 0,
    burst_rows: int = 20,
    blob_trigger_source: str | None = None,
) -> ChaosReport:
    say: Callable[[str], None] = (lambda _line: None) if quiet else (lambda line: print(line, flush=True))
    started = time.monotonic()
    base = base_dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    settings = {**CHAOS_SETTINGS, **({"BLOB_TRIGGER_SOURCE": blob_trigger_source} if blob_trigger_source else {})}
    stack = LocalStack(isolated_settings(base, settings), report=lambda line: logger.info("%s", line))
    prefix = f"chaos-{uuid.uuid4().hex[:6]}/"
    payloads = make_files(files, rows, prefix)
    burst_prefix = f"chaos-burst-{uuid.uuid4().hex[:6]}/"
    burst_payloads = make_files(burst, burst_rows, burst_prefix, seed=BURST_SEED) if burst else {}
    report = ChaosReport(files=files, burst=ChaosReport(files=burst) if burst else None)
    conn = stack.settings.storage_connection_string
    try:
        stack.up()
        say(f"stack up in {time.monotonic() - started:.0f} s; dropping {files} files of {rows} rows")
        with BlobServiceClient.from_connection_string(conn) as service:
            watcher = OutputWatcher(service.get_container_client(OUTPUT), payloads, [prefix, f"errors/{prefix}"])
            burst_watcher = OutputWatcher(
                service.get_container_client(OUTPUT), burst_payloads, [burst_prefix, f"errors/{burst_prefix}"]
            )
            uploader = Uploader(conn, payloads, pace)
            burster = Uploader(conn, burst_payloads, 0.0, sessions=1)
            uploader.start()
            for step, name in enumerate(KILL_ORDER, 1):
                while uploader.is_alive() and uploader.count() < files * step // (len(KILL_ORDER) + 1):
                    time.sleep(0.1)
                if step == 1 and burst:
                    # Half the burst uploaded when the scoring server goes: its batches are in flight.
                    burster.start()
                    while burster.is_alive() and burster.count() < burst // 2:
                        time.sleep(0.05)
                    say(f"burst of {burst} small files: {burster.count()} uploaded at the first kill")
                _safe_poll(watcher)
                uploaded = uploader.count()
                pid, members = kill_service(stack, name)
                say(f"kill -9 {name} (pid {pid}, {members} processes) after {uploaded} uploads")
                time.sleep(1.0)
                down_at = time.monotonic()
                stack.up([name])
                report.kills.append(
                    {"service": name, "pid": pid, "processes": members, "uploaded": uploaded,
                     "restart_s": time.monotonic() - down_at}
                )  # fmt: skip
                if name == "azurite":
                    report.reuploaded_after_azurite_loss = reupload_lost(conn, uploader, payloads)
                    if report.burst is not None:
                        report.burst.reuploaded_after_azurite_loss = reupload_lost(conn, burster, burst_payloads)
            for thread in (uploader, burster):
                if thread.is_alive() or thread.ident is not None:
                    thread.join()
                if thread.error is not None:
                    raise RuntimeError(f"the uploader failed: {thread.error}") from thread.error
            say("all files uploaded and every service restarted; waiting for the pipeline to finish")
            settle_until = time.monotonic() + settle_timeout
            groups = [(report, watcher, payloads, prefix)]
            if report.burst is not None:
                groups.append((report.burst, burst_watcher, burst_payloads, burst_prefix))
            for group, group_watcher, group_payloads, group_prefix in groups:
                left = max(0.0, settle_until - time.monotonic())
                group.unsettled = settle(group_watcher, group_payloads, left, say)
                if group.unsettled:
                    group.stuck = diagnose(service, group_prefix, group.unsettled)
                    for line in group.stuck[:20]:
                        say(f"  {line}")
            time.sleep(5.0)  # late duplicates would show up now
            for group, group_watcher, group_payloads, _ in groups:
                judge(group, group_watcher, group_payloads)
        report.secrets_in_logs = secrets_in_logs(stack.settings.log_dir)
    finally:
        stack.down()
        if base_dir is None:
            shutil.rmtree(base, ignore_errors=True)
    report.seconds = time.monotonic() - started
    report.load_avg = load_average()
    return report


def settle(watcher: OutputWatcher, payloads: dict[str, bytes], timeout: float, say: Callable[[str], None]) -> list[str]:
    """Waits until every input has an outcome; says how many are missing every ``PROGRESS_SECONDS``.
    Returns the inputs still missing when ``timeout`` ran out (empty when everything settled)."""
    started = time.monotonic()
    next_progress = started + PROGRESS_SECONDS
    while True:
        # Wait on what exists now, not on what was ever seen: an output Azurite lost after it was seen
        # is written again once reconcile has found that the ledger record's output is gone.
        missing = _safe_current(watcher).missing(payloads)
        waited = time.monotonic() - started
        if not missing:
            say(f"every input has an outcome after {waited:.0f} s")
            return []
        if waited >= timeout:
            say(f"settle time of {timeout:.0f} s ran out: {len(missing)} of {len(payloads)} inputs have no outcome")
            return missing
        if time.monotonic() >= next_progress:
            say(f"  {waited:.0f} s: {len(missing)} inputs still without an outcome (first: {missing[0]})")
            next_progress += PROGRESS_SECONDS
        time.sleep(1.0)


def diagnose(service: BlobServiceClient, prefix: str, names: list[str]) -> list[str]:
    """What the ledger says about inputs without an outcome: record state, attempt and in-flight marker."""
    ledger = service.get_container_client(LEDGER)
    try:
        markers = {b.name.removeprefix("inflight/") for b in ledger.list_blobs(name_starts_with="inflight/")}
        records: dict[str, list[dict[str, Any]]] = {}
        for blob in ledger.list_blobs(name_starts_with="requests/", include=["metadata"]):
            record = json.loads(ledger.download_blob(blob.name).readall())
            if (blob.metadata or {}).get("inflight") == "true":
                markers.add(record["request_id"])
            if record.get("input_name", "").startswith(prefix):
                records.setdefault(record["input_name"], []).append(record)
    except AzureError as exc:
        return [f"the ledger could not be read: {type(exc).__name__}: {exc}"]
    lines = []
    for name in names:
        found = records.get(name, [])
        if not found:
            lines.append(f"{name}: no ledger record")
        for r in found:
            lines.append(
                f"{name}: request {r['request_id']} {r['state']} attempt {r['attempt']}, "
                f"output {r.get('output_location')}, error {r.get('error_code')}, "
                f"marker {'yes' if r['request_id'] in markers else 'no'}"
            )
    return lines


def _safe_poll(watcher: OutputWatcher) -> Any:
    try:
        return watcher.poll()
    except AzureError as exc:
        logger.info("listing outputs failed (%s)", type(exc).__name__)
        return watcher.outcomes


def _safe_current(watcher: OutputWatcher) -> Any:
    """What exists now; outputs seen before and gone now are remembered in ``watcher.gone``."""
    try:
        now = watcher.current()
    except AzureError as exc:
        logger.info("listing outputs failed (%s)", type(exc).__name__)
        return watcher.outcomes
    watcher.gone.update(n for n in watcher.outcomes.outputs if n not in now.outputs)
    return now


def judge(report: ChaosReport, watcher: OutputWatcher, payloads: dict[str, bytes]) -> None:
    now = watcher.current()
    seen = watcher.outcomes
    model = ReferenceModel()
    report.outputs_lost_after_seen = [n for n in seen.outputs if n not in now.outputs]
    report.outputs_lost_then_recreated = sorted(n for n in watcher.gone if n in now.outputs)
    report.missing = now.missing(payloads)
    report.both = now.both(payloads)
    for name, data in payloads.items():
        if name in now.errors and name not in now.outputs:
            error = watcher.error_record(name)["error"]
            report.error_records[name] = f"{error['code']}: {error['message']}"
        elif name in now.outputs:
            problems = model.check_csv(data, watcher.output(name))
            if problems:
                report.outputs_wrong[name] = problems
            elif name not in now.errors:
                report.outputs_ok += 1


def summary(reports: list[ChaosReport]) -> list[str]:
    """One line per run and the totals, for ``--repeat``."""
    lines = []
    for i, r in enumerate(reports, 1):
        outputs_lost = len(r.outputs_lost_then_recreated) + len(r.outputs_lost_after_seen)
        b = r.burst
        burst = (
            f"; burst of {b.files}: lost {len(b.missing)}, not matching {len(b.outputs_wrong)}, both {len(b.both)}, "
            f"error records {len(b.error_records)}"
            if b is not None
            else ""
        )
        lines.append(
            f"run {i}: {'PASS' if r.ok else 'FAIL'} in {r.seconds:.0f} s; lost {len(r.missing)}, "
            f"outputs not matching the model (duplicated or missing rows included) {len(r.outputs_wrong)}, "
            f"both {len(r.both)}, error records {len(r.error_records)}{burst}; "
            f"Azurite lost {len(r.reuploaded_after_azurite_loss)} inputs and {outputs_lost} outputs "
            f"({len(r.outputs_lost_then_recreated)} written again); load average {r.load_avg}"
        )
    passed = sum(r.ok for r in reports)
    bursts = [r.burst for r in reports if r.burst is not None]
    lines.append(
        f"{passed} of {len(reports)} runs clean: {sum(len(r.missing) for r in reports)} lost, "
        f"{sum(len(r.outputs_wrong) for r in reports)} not matching, {sum(len(r.both) for r in reports)} both"
        + (
            f"; bursts: {sum(len(b.missing) for b in bursts)} lost, {sum(len(b.outputs_wrong) for b in bursts)} "
            f"not matching, {sum(len(b.both) for b in bursts)} both"
            if bursts
            else ""
        )
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rows", type=int, default=100, help="rows per file")
    parser.add_argument("--pace", type=float, default=0.2, help="seconds between uploads")
    parser.add_argument("--burst", type=int, default=300, help="small files dropped at once before the first kill")
    parser.add_argument("--burst-rows", type=int, default=20, help="rows per file of the burst")
    parser.add_argument("--settle-timeout", type=float, default=600.0, help="seconds to wait for the last outputs")
    parser.add_argument("--keep", type=Path, help="use this base dir and keep it (logs) afterwards")
    parser.add_argument("--repeat", type=int, default=1, help="run this many times in a row (a fresh stack each)")
    parser.add_argument(
        "--blob-trigger-source", choices=("LogsAndContainerScan", "EventGrid"),
        help="BLOB_TRIGGER_SOURCE of the function app (default: local.settings.json.example's); with EventGrid the "
        "local host keeps the blob trigger's receipts in its data directory instead of in storage",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    reports = []
    for i in range(args.repeat):
        if args.repeat > 1:
            print(f"=== run {i + 1} of {args.repeat}", flush=True)
        base_dir = args.keep / f"run-{i + 1}" if args.keep and args.repeat > 1 else args.keep
        report = run(
            files=args.files,
            rows=args.rows,
            pace=args.pace,
            settle_timeout=args.settle_timeout,
            base_dir=base_dir,
            burst=args.burst,
            burst_rows=args.burst_rows,
            blob_trigger_source=args.blob_trigger_source,
        )
        print("\n".join(report.lines()), flush=True)
        reports.append(report)
    if args.repeat > 1:
        print("\n".join(summary(reports)))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
