"""Scoring service throughput and latency through the real AML inference server, against in-process baselines.

Starts Azurite, the Service Bus emulator and ``azmlinfsrv`` (scoring/score.py with the trained model in
scoring/model) on free loopback ports in a temporary folder, then measures, each against a baseline
measured in the same run:

* sync rows/s at 10,000 rows per request, sent as JSON rows and as CSV text, vs the MLflow pyfunc
  ``model.predict`` on the same rows in this process (goal >= 0.7x; scikit-learn ``predict_proba`` is
  shown too);
* p50 / p95 latency of a one-row sync request (goal p50 <= 10 ms);
* async scoring of a 1,000,000-row CSV read from Azurite, from the POST to the result message received
  from the emulator (output staged to the results container), vs a plain pandas script on the same file
  from local disk: ``read_csv`` + ``predict_proba`` + ``to_csv`` with the two added columns (goal >= 1.0x).

    python -m benchmarks.scoring_bench [--rows N] [--sync-requests N] [--latency-requests N]

The table is printed and the figures are written to ``benchmarks/results/scoring.json``. The input file is
cached in ``benchmarks/data/`` (not committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
import requests
from azure.servicebus import ServiceBusClient

from devstack.ports import free_port
from devstack.stack import LocalStack, StackSettings
from scoring.sample import frame, sample_bytes
from shared.contracts import DataFormat, ResultStatus
from tests.integration.scoring.helpers import (
    CLIENT_SUBSCRIPTION,
    RESULT_TOPIC,
    result_of,
    sas_url,
    scoring_request,
    upload,
)

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "scoring.json"
DATA = REPO / "benchmarks" / "data"
MODEL = REPO / "scoring" / "model"
SYNC_ROWS = 10_000
GOALS = {"sync_ratio": 0.7, "latency_p50_ms": 10.0, "async_ratio": 1.0}


def _timed(fn: Any, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def sync_throughput(score_url: str, requests_: int) -> dict[str, float]:
    """Median request time for 10k rows as JSON records and as CSV text, vs in-process predict on the rows."""
    data = frame(SYNC_ROWS, seed=101)
    bodies = {
        "json": json.dumps({"data": json.loads(data.to_json(orient="records"))}),
        "csv": json.dumps({"csv": data.to_csv(index=False)}),
    }
    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    figures: dict[str, float] = {"rows_per_request": SYNC_ROWS}
    for shape, body in bodies.items():
        first = session.post(score_url, data=body, headers=headers, timeout=120)
        first.raise_for_status()
        answered = first.json()
        assert len(answered["predictions"]) == SYNC_ROWS if shape == "json" else answered["rows"] == SYNC_ROWS

        def call(body: str = body) -> None:
            session.post(score_url, data=body, headers=headers, timeout=120).raise_for_status()

        figures[f"server_{shape}_rows_per_s"] = SYNC_ROWS / statistics.median(_timed(call, requests_))
    pyfunc = mlflow.pyfunc.load_model(str(MODEL))
    pipeline = mlflow.sklearn.load_model(str(MODEL))
    _timed(lambda: pyfunc.predict(data), 2)
    figures["pyfunc_rows_per_s"] = SYNC_ROWS / statistics.median(_timed(lambda: pyfunc.predict(data), requests_))
    figures["sklearn_rows_per_s"] = SYNC_ROWS / statistics.median(
        _timed(lambda: pipeline.predict_proba(data), requests_)
    )
    for shape in bodies:
        figures[f"{shape}_ratio_vs_pyfunc"] = figures[f"server_{shape}_rows_per_s"] / figures["pyfunc_rows_per_s"]
    return figures


def one_row_latency(score_url: str, requests_: int) -> dict[str, float]:
    body = json.dumps({"data": json.loads(frame(1, seed=102).to_json(orient="records"))})
    session = requests.Session()
    headers = {"Content-Type": "application/json"}

    def call() -> None:
        session.post(score_url, data=body, headers=headers, timeout=30).raise_for_status()

    _timed(call, 20)
    times = sorted(t * 1000 for t in _timed(call, requests_))
    pyfunc = mlflow.pyfunc.load_model(str(MODEL))
    one = frame(1, seed=102)
    local = sorted(t * 1000 for t in _timed(lambda: pyfunc.predict(one), requests_))
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": times[int(len(times) * 0.95) - 1],
        "pyfunc_p50_ms": statistics.median(local),
    }


def input_file(rows: int) -> Path:
    path = DATA / f"churn-{rows}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sample_bytes(rows, "csv", seed=103))
    return path


def async_throughput(settings: StackSettings, path: Path, rows: int) -> dict[str, Any]:
    name = f"bench-{int(time.time())}/{path.name}"
    started = time.perf_counter()
    upload(settings.storage_connection_string, name, path.read_bytes())
    upload_s = time.perf_counter() - started
    request = scoring_request(sas_url(settings.blob_endpoint, name), path.name, DataFormat.CSV)
    # The waiting client is already attached to its session when the request goes out, as a real one is.
    with ServiceBusClient.from_connection_string(settings.servicebus_connection_string) as client:
        receiver = client.get_subscription_receiver(
            RESULT_TOPIC, CLIENT_SUBSCRIPTION, session_id=request.reply.session_id, max_wait_time=600
        )
        with receiver:
            started = time.perf_counter()
            response = requests.post(settings.scoring_url, data=request.to_json(), timeout=30)
            accepted_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 202:
                raise RuntimeError(f"async request refused: {response.status_code} {response.text}")
            messages = receiver.receive_messages(max_message_count=1, max_wait_time=600)
            elapsed = time.perf_counter() - started
            if not messages:
                raise RuntimeError("no result message within 600 s")
            receiver.complete_message(messages[0])
    result = result_of(messages[0])
    if result.status != ResultStatus.SUCCEEDED or result.rows_scored != rows or result.output is None:
        raise RuntimeError(f"async scoring failed: {result.error} ({result.rows_scored} rows)")
    assert result.output.blob_url is not None
    body = requests.get(result.output.blob_url, timeout=300).content
    if hashlib.sha256(body).hexdigest() != result.output.sha256:
        raise RuntimeError("the results blob does not match the sha256 in the result message")
    return {
        "rows": rows,
        "input_bytes": path.stat().st_size,
        "output_bytes": result.output.size,
        "upload_to_azurite_s": upload_s,
        "accepted_ms": accepted_ms,
        "service_s": elapsed,
        "service_rows_per_s": rows / elapsed,
    }


def pandas_baseline(path: Path, rows: int) -> dict[str, float]:
    """What a user would write instead of the service: read, predict, write with two added columns."""
    pipeline = mlflow.sklearn.load_model(str(MODEL))
    positive = list(pipeline.classes_).index("Yes")
    out = Path(tempfile.mkdtemp()) / "scored.csv"
    t0 = time.perf_counter()
    data = pd.read_csv(path)
    t1 = time.perf_counter()
    proba = pipeline.predict_proba(data)[:, positive]
    t2 = time.perf_counter()
    data["prediction"] = pd.Series(proba > 0.5).map({True: "Yes", False: "No"})
    data["probability"] = proba.round(6)
    data.to_csv(out, index=False)
    t3 = time.perf_counter()
    out.unlink()
    out.parent.rmdir()
    total = t3 - t0
    return {"read_s": t1 - t0, "predict_s": t2 - t1, "write_s": t3 - t2, "total_s": total, "rows_per_s": rows / total}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not (MODEL / "MLmodel").exists():
        from scoring.train import main as train_main

        train_main(["--out", str(MODEL)])
    base = Path(tempfile.mkdtemp(prefix="scoring-bench-"))
    settings = replace(
        StackSettings(base_dir=base),
        blob_port=free_port(),
        queue_port=free_port(),
        table_port=free_port(),
        servicebus_port=free_port(),
        scoring_port=free_port(),
        functions_port=free_port(),
    )
    stack = LocalStack(settings, report=lambda line: logger.info("%s", line))
    path = input_file(args.rows)
    try:
        stack.up(["azurite", "servicebus", "scoring"])
        figures: dict[str, Any] = {
            "sync": sync_throughput(settings.scoring_url, args.sync_requests),
            "latency": one_row_latency(settings.scoring_url, args.latency_requests),
            "async": async_throughput(settings, path, args.rows),
            "pandas_baseline": pandas_baseline(path, args.rows),
        }
    finally:
        stack.down()
    figures["async"]["ratio_vs_pandas"] = (
        figures["async"]["service_rows_per_s"] / figures["pandas_baseline"]["rows_per_s"]
    )
    figures["goals"] = GOALS
    figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()}
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


def print_table(f: dict[str, Any]) -> None:
    s, lat, a, b = f["sync"], f["latency"], f["async"], f["pandas_baseline"]
    rows = [
        ("sync rows/s, 10k JSON rows/request", f"{s['server_json_rows_per_s']:,.0f}",
         f"pyfunc predict {s['pyfunc_rows_per_s']:,.0f}", f"{s['json_ratio_vs_pyfunc']:.2f}x", ">= 0.7x"),
        ("sync rows/s, 10k CSV rows/request", f"{s['server_csv_rows_per_s']:,.0f}",
         f"(sklearn predict_proba {s['sklearn_rows_per_s']:,.0f})", f"{s['csv_ratio_vs_pyfunc']:.2f}x", ">= 0.7x"),
        ("1-row request p50 / p95 (ms)", f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}",
         f"pyfunc predict p50 {lat['pyfunc_p50_ms']:.1f}", "", "p50 <= 10 ms"),
        (f"async {a['rows']:,}-row CSV rows/s", f"{a['service_rows_per_s']:,.0f}",
         f"pandas script {b['rows_per_s']:,.0f}", f"{a['ratio_vs_pandas']:.2f}x", ">= 1.0x"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    header = ("measure", "service", "baseline (same run)", "ratio", "goal")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    print(
        f"async: {a['service_s']:.1f} s from POST to result (accepted in {a['accepted_ms']:.0f} ms; "
        f"{a['input_bytes'] / 2**20:.0f} MiB in, {a['output_bytes'] / 2**20:.0f} MiB out); pandas: read "
        f"{b['read_s']:.1f} s, predict {b['predict_s']:.1f} s, write {b['write_s']:.1f} s"
    )
    print(f"load average during the run: {f['machine']['load_avg']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the async CSV")
    parser.add_argument("--sync-requests", type=int, default=20)
    parser.add_argument("--latency-requests", type=int, default=300)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    figures = run(args)
    print_table(figures)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
