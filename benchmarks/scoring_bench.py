"""Scoring service throughput and latency through the real AML inference server, against in-process baselines.

Starts Azurite, the Service Bus emulator and ``azmlinfsrv`` (scoring/score.py with the trained model in
scoring/model) on free loopback ports in a temporary folder, then measures, each against a baseline
measured in the same run:

* sync rows/s at 10,000 rows per request in each request shape (``{"data": [...]}`` rows,
  ``dataframe_split``, ``{"csv": "..."}`` and a ``text/csv`` body), each body encoded once outside the
  timed loop and sent with ``http.client`` (see :func:`post`), vs the MLflow pyfunc ``model.predict`` and the
  scikit-learn ``predict_proba`` on the same DataFrame in this process (goal >= 0.7x). Beside the wall
  time: the server's own ``run()`` time (its ``x-ms-run-fn-exec-ms`` header) and the CPU time of the
  server processes and of this client per request, since the machine may be shared and noisy;
* p50 / p95 latency of a one-row sync request (goal p50 <= 10 ms);
* async scoring of a 1,000,000-row CSV read from Azurite, from the POST to the result message received
  from the emulator (output staged to the results container), vs a plain pandas script on the same file
  from local disk: ``read_csv`` + ``predict_proba`` (or ``predict``) + ``to_csv`` with the added columns
  (goal >= 1.0x), for the example model and for two ordinary user pipelines trained here on the same
  columns, each served by its own ``azmlinfsrv``: a ``HistGradientBoostingClassifier`` and a
  ``HistGradientBoostingRegressor`` behind an ``OrdinalEncoder`` (neither gets a compiled fast path);
* the server's peak resident memory (VmHWM summed over gunicorn's master and worker, reset before each
  run) during that async run vs during an async run of a tenth of the rows just before it (goal about
  1.0x: memory bounded by the chunk size, not the file size).

    python -m benchmarks.scoring_bench [--rows N] [--sync-requests N] [--latency-requests N] [--sync-only]

The table is printed and the figures are written to ``benchmarks/results/scoring.json``. The input file is
cached in ``benchmarks/data/`` (not committed).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import psutil
import requests
from azure.servicebus import AutoLockRenewer, ServiceBusClient

from benchmarks.figures import RESULTS, save, stamp
from devstack import gunicorn_loopback
from devstack.ports import LOOPBACK
from devstack.stack import LocalStack, StackSettings
from scoring.examples.churn.sample import frame, sample_bytes
from shared.contracts import ResultStatus, detect_format
from tests.support.azmlinfsrv import ScoringServer, start_scoring_server
from tests.support.flow import isolated_settings, peak_rss_kib
from tests.support.scoring import CLIENT_SUBSCRIPTION, RESULT_TOPIC, result_of, sas_url, scoring_request, upload

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data"
MODEL = REPO / "scoring" / "model"
SYNC_ROWS = 10_000
JSON = "application/json"
GOALS = {"sync_ratio": 0.7, "latency_p50_ms": 10.0, "async_ratio": 1.0, "memory_ratio": 1.0}


def _timed(fn: Any, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def _server_processes(port: int) -> list[psutil.Process]:
    """The azmlinfsrv processes serving ``port`` (gunicorn's master and its forked workers share its argv)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if any("azmlinfsrv" in a for a in argv[:2]) and "--port" in argv and str(port) in argv:
            found.append(proc)
    return found


def _reset_peaks(procs: list[psutil.Process]) -> None:
    """Resets VmHWM (writing 5 to clear_refs) so the next peak belongs to the next run."""
    for proc in procs:
        try:
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        except OSError as exc:
            logger.warning("could not reset the peak RSS of pid %s: %s", proc.pid, exc)


def _peak_mib(procs: list[psutil.Process]) -> float:
    return sum(peak_rss_kib(proc.pid) or 0 for proc in procs) / 1024


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def sync_bodies(data: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    """Each sync request shape for the same rows, encoded once: (body bytes, Content-Type)."""
    records = json.loads(data.to_json(orient="records"))
    split = json.loads(data.to_json(orient="split", index=False))
    csv_text = data.to_csv(index=False)
    return {
        "json": (json.dumps({"data": records}).encode(), JSON),
        "split": (json.dumps({"dataframe_split": split}).encode(), JSON),
        "csv_in_json": (json.dumps({"csv": csv_text}).encode(), JSON),
        "csv": (csv_text.encode(), "text/csv"),
    }


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def check(self, what: str) -> None:
        if self.status != 200:
            raise RuntimeError(f"{what}: HTTP {self.status}: {self.body[:500]!r}")


def post(url: str, body: bytes, content_type: str) -> Answer:
    """One POST on a new connection, the way a load generator sends it.

    The server's gunicorn sync worker closes the connection after every answer, so there is nothing to
    keep alive. ``http.client`` reads the answer in one call; ``requests`` reading it in 10 KiB pieces
    and building its objects costs this client about 3 ms per 1.5 MB request, which would be counted
    as the server's time.
    """
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port, timeout=120)
    try:
        conn.request("POST", parts.path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def _check_answer(shape: str, answer: Answer, rows: int) -> None:
    answer.check(shape)
    if shape == "csv":
        answered = answer.body.count(b"\n") - 1
    elif shape == "csv_in_json":
        answered = json.loads(answer.body)["rows"]
    else:
        answered = len(json.loads(answer.body)["predictions"])
    if answered != rows:
        raise RuntimeError(f"{shape}: {answered} rows answered for {rows} sent")


class Baselines:
    """In-process predictions on the same DataFrame, timed between the server requests so both see the same load.

    Timed that way, each predict starts with the caches the request before it left (1.2 to 1.7 times the time
    of predicts run back to back on this machine). ``back_to_back_ms`` times pyfunc predicts in a row with
    nothing in between, the baseline's best case, reported beside the interleaved one.
    """

    def __init__(self, data: pd.DataFrame) -> None:
        self.data = data
        self.pyfunc = mlflow.pyfunc.load_model(str(MODEL))
        self.pipeline = mlflow.sklearn.load_model(str(MODEL))
        self.samples: dict[str, list[tuple[float, float]]] = {"pyfunc": [], "sklearn": []}  # (wall s, CPU s)
        for _ in range(3):
            self.pyfunc.predict(data)
            self.pipeline.predict_proba(data)
        self.back_to_back_ms = statistics.median(_timed(lambda: self.pyfunc.predict(data), 20)) * 1000

    def run_once(self) -> None:
        for name, fn in (("pyfunc", self.pyfunc.predict), ("sklearn", self.pipeline.predict_proba)):
            cpu, wall = time.process_time(), time.perf_counter()
            fn(self.data)
            self.samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))

    def median_ms(self, name: str, which: int) -> float:
        return statistics.median(sample[which] for sample in self.samples[name]) * 1000


def measure_shape(
    url: str,
    body: bytes,
    content_type: str,
    requests_: int,
    server: list[psutil.Process],
    baselines: Baselines,
) -> dict[str, float]:
    """Wall time, the server's run() time and the server's and this client's CPU per request, medians/means."""
    walls, runs = [], []
    client_s, busy_s = 0.0, 0.0
    server_cpu = _cpu_seconds(server)
    for _ in range(requests_):
        t0, c0 = time.perf_counter(), time.process_time()
        answer = post(url, body, content_type)
        walls.append(time.perf_counter() - t0)
        client_s += time.process_time() - c0
        busy_s += walls[-1]
        answer.check(content_type)
        runs.append(float(answer.headers.get("x-ms-run-fn-exec-ms", "nan")))
        baselines.run_once()  # the server is idle meanwhile, so its CPU count stays its own
    server_s = _cpu_seconds(server) - server_cpu
    return {
        "wall_p50_ms": statistics.median(walls) * 1000,
        "run_fn_p50_ms": statistics.median(runs),
        "server_cpu_ms_per_request": server_s / requests_ * 1000,
        "client_cpu_ms_per_request": client_s / requests_ * 1000,
        "server_cpu_share_of_wall": server_s / busy_s,
        "request_bytes": len(body),
        "response_bytes": len(answer.body),
    }


def sync_throughput(score_url: str, port: int, requests_: int) -> dict[str, Any]:
    """10k rows per request in each shape, vs in-process pyfunc predict and sklearn predict_proba on the rows.

    Bodies are encoded once, outside the timed loop, and sent with :func:`post`, so the client
    mostly waits; its own CPU per request is reported beside the server's to show it. Ratios are given
    on wall time and on CPU time (baseline CPU per predict / server CPU per request), the latter being
    the steadier figure on a shared machine.
    """
    data = frame(SYNC_ROWS, seed=101)
    server = _server_processes(port)
    baselines = Baselines(data)
    shapes: dict[str, dict[str, float]] = {}
    for shape, (body, content_type) in sync_bodies(data).items():
        for _ in range(2):  # warm-up, and the answer is checked
            _check_answer(shape, post(score_url, body, content_type), SYNC_ROWS)
        shapes[shape] = measure_shape(score_url, body, content_type, requests_, server, baselines)
    figures: dict[str, Any] = {
        "rows_per_request": SYNC_ROWS,
        "pyfunc_ms": baselines.median_ms("pyfunc", 0),
        "pyfunc_back_to_back_ms": baselines.back_to_back_ms,
        "sklearn_ms": baselines.median_ms("sklearn", 0),
        "pyfunc_cpu_ms": baselines.median_ms("pyfunc", 1),
        "sklearn_cpu_ms": baselines.median_ms("sklearn", 1),
        "server_found": bool(server),
        "load_avg": os.getloadavg(),
        "shapes": shapes,
    }
    figures["pyfunc_rows_per_s"] = SYNC_ROWS / figures["pyfunc_ms"] * 1000
    figures["sklearn_rows_per_s"] = SYNC_ROWS / figures["sklearn_ms"] * 1000
    for f in shapes.values():
        f["rows_per_s"] = SYNC_ROWS / f["wall_p50_ms"] * 1000
        f["ratio_vs_pyfunc"] = figures["pyfunc_ms"] / f["wall_p50_ms"]
        f["ratio_vs_pyfunc_back_to_back"] = figures["pyfunc_back_to_back_ms"] / f["wall_p50_ms"]
        f["ratio_vs_sklearn"] = figures["sklearn_ms"] / f["wall_p50_ms"]
        if server:
            f["cpu_ratio_vs_pyfunc"] = figures["pyfunc_cpu_ms"] / f["server_cpu_ms_per_request"]
            f["cpu_ratio_vs_sklearn"] = figures["sklearn_cpu_ms"] / f["server_cpu_ms_per_request"]
    # Flat keys read by the combined table (python -m benchmarks).
    for shape in ("json", "csv"):
        figures[f"server_{shape}_rows_per_s"] = shapes[shape]["rows_per_s"]
        figures[f"{shape}_ratio_vs_pyfunc"] = shapes[shape]["ratio_vs_pyfunc"]
    return figures


def one_row_latency(score_url: str, requests_: int) -> dict[str, float]:
    body = json.dumps({"data": json.loads(frame(1, seed=102).to_json(orient="records"))}).encode()
    session = requests.Session()
    headers = {"Content-Type": JSON}
    runs: list[float] = []

    def call() -> None:
        response = session.post(score_url, data=body, headers=headers, timeout=30)
        response.raise_for_status()
        runs.append(float(response.headers.get("x-ms-run-fn-exec-ms", "nan")))

    _timed(call, 20)
    runs.clear()
    times = sorted(t * 1000 for t in _timed(call, requests_))
    pyfunc = mlflow.pyfunc.load_model(str(MODEL))
    one = frame(1, seed=102)
    local = sorted(t * 1000 for t in _timed(lambda: pyfunc.predict(one), requests_))
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": times[int(len(times) * 0.95) - 1],
        "run_fn_p50_ms": statistics.median(runs),
        "pyfunc_p50_ms": statistics.median(local),
    }


def input_file(rows: int) -> Path:
    path = DATA / f"churn-{rows}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sample_bytes(rows, "csv", seed=103))
    return path


def async_throughput(settings: StackSettings, path: Path, rows: int, scoring_url: str | None = None) -> dict[str, Any]:
    name = f"bench-{int(time.time())}/{path.name}"
    started = time.perf_counter()
    upload(settings.storage_connection_string, name, path.read_bytes())
    upload_s = time.perf_counter() - started
    detected = detect_format(path.name)
    assert detected is not None, path
    request = scoring_request(sas_url(settings.blob_endpoint, name), path.name, detected[0], compression=detected[1])
    # The waiting client is already attached to its session when the request goes out, as a real one is.
    with ServiceBusClient.from_connection_string(settings.servicebus_connection_string) as client:
        receiver = client.get_subscription_receiver(
            RESULT_TOPIC, CLIENT_SUBSCRIPTION, session_id=request.reply.session_id, max_wait_time=600
        )
        # A large file takes longer than the session lock: keep the lock while waiting, as a real client does.
        with receiver, AutoLockRenewer(max_lock_renewal_duration=900) as renewer:
            renewer.register(receiver, receiver.session)
            started = time.perf_counter()
            response = requests.post(scoring_url or settings.scoring_url, data=request.to_json(), timeout=30)
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


def pandas_baseline(path: Path, rows: int, model_dir: Path = MODEL) -> dict[str, float]:
    """What a user would write instead of the service: read, predict, write with the added columns."""
    model = mlflow.sklearn.load_model(str(model_dir))
    parquet = path.suffix == ".parquet"  # read_parquet + to_parquet, else read_csv + to_csv
    out = Path(tempfile.mkdtemp()) / f"scored{path.suffix}"
    t0 = time.perf_counter()
    data = pd.read_parquet(path) if parquet else pd.read_csv(path)
    t1 = time.perf_counter()
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(data)
        picked = proba.argmax(axis=1)
        t2 = time.perf_counter()
        data["prediction"] = model.classes_[picked]
        data["probability"] = proba[np.arange(len(data)), picked]
    else:
        prediction = model.predict(data)
        t2 = time.perf_counter()
        data["prediction"] = prediction
    if parquet:
        data.to_parquet(out, index=False)
    else:
        data.to_csv(out, index=False)
    t3 = time.perf_counter()
    out.unlink()
    out.parent.rmdir()
    total = t3 - t0
    return {"read_s": t1 - t0, "predict_s": t2 - t1, "write_s": t3 - t2, "total_s": total, "rows_per_s": rows / total}


# ----------------------------------------------------------------------------------- user models
USER_MODELS = ("hgb_classifier", "hgb_regressor")
_TRAIN_ROWS = 20_000


def train_user_model(kind: str, out: Path) -> Path:
    """An ordinary scikit-learn pipeline on the example's columns, saved as a user saves it (skops, signature)."""
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    data = frame(_TRAIN_ROWS, 5)
    numbers = [c for c in data.columns if pd.api.types.is_numeric_dtype(data[c])]
    strings = [c for c in data.columns if c not in numbers and c != "customerID"]
    encode = ColumnTransformer(
        [
            ("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), strings),
            ("numbers", "passthrough", numbers),
        ]
    )
    categorical = list(range(len(strings)))
    rng = np.random.default_rng(5)
    if kind == "hgb_classifier":
        y = np.where((data["Contract"] == "Month-to-month") & (rng.random(len(data)) < 0.6), "leave", "stay")
        model = HistGradientBoostingClassifier(max_iter=100, categorical_features=categorical)
    else:
        y = data["MonthlyCharges"].to_numpy() * 12 - data["tenure"].to_numpy() * 3 + rng.normal(0, 5, len(data))
        model = HistGradientBoostingRegressor(max_iter=100, categorical_features=categorical)
    pipeline = Pipeline([("features", encode), ("model", model)]).fit(data, y)
    sample = data.head(500)
    mlflow.sklearn.save_model(
        pipeline,
        str(out),
        signature=infer_signature(sample, pipeline.predict(sample)),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=_trusted_types(pipeline),
        pip_requirements=["mlflow", "scikit-learn", "skops"],
    )
    return out


def _trusted_types(pipeline: Any) -> list[str]:
    import skops.io

    with tempfile.TemporaryDirectory() as tmp:
        dumped = Path(tmp) / "model.skops"
        skops.io.dump(pipeline, dumped)
        return list(skops.io.get_untrusted_types(file=dumped))


def start_user_server(settings: StackSettings, model_dir: Path, log: Path) -> ScoringServer:
    """One more ``azmlinfsrv`` serving ``model_dir``, wired to the stack's Azurite and Service Bus emulator."""
    env = {
        "RESULT_SERVICEBUS_CONNECTION": settings.servicebus_connection_string,
        "RESULTS_STORAGE_CONNECTION": settings.storage_connection_string,
        "GUNICORN_CMD_ARGS": gunicorn_loopback.CMD_ARGS,
    }
    return start_scoring_server(model_dir, log, env, timeout=120)


def with_baseline(served: dict[str, Any], path: Path, rows: int, model_dir: Path) -> dict[str, Any]:
    """``served`` (figures of :func:`async_throughput` on ``path``) beside a pandas script with the same model."""
    baseline = pandas_baseline(path, rows, model_dir)
    served["ratio_vs_pandas"] = served["service_rows_per_s"] / baseline["rows_per_s"]
    return {"async": served, "pandas_baseline": baseline}


def user_model_rows(settings: StackSettings, base: Path, path: Path, rows: int) -> dict[str, Any]:
    """Async rows/s of each user model on the same file, each served by its own server (stopped before its
    pandas script runs), against its own pandas script."""
    figures: dict[str, Any] = {}
    for kind in USER_MODELS:
        model_dir = train_user_model(kind, base / kind)
        server = start_user_server(settings, model_dir, base / f"{kind}.log")
        try:
            served = async_throughput(settings, path, rows, server.score_url)
        finally:
            server.stop()
        figures[kind] = with_baseline(served, path, rows, model_dir)
    return figures


@contextlib.contextmanager
def scoring_stack(prefix: str) -> Iterator[tuple[StackSettings, Path]]:
    """Azurite, the Service Bus emulator and azmlinfsrv serving scoring/model (trained first if missing), on
    free loopback ports under a new temporary folder; the settings and that folder."""
    if not (MODEL / "MLmodel").exists():
        from scoring.train import main as train_main

        train_main(["--out", str(MODEL)])
    base = Path(tempfile.mkdtemp(prefix=prefix))
    settings = isolated_settings(base)
    stack = LocalStack(settings, report=lambda line: logger.info("%s", line))
    try:
        stack.up(["azurite", "servicebus", "scoring"])
        yield settings, base
    finally:
        stack.down()


def run(args: argparse.Namespace) -> dict[str, Any]:
    path = input_file(args.rows) if not args.sync_only else None
    with scoring_stack("scoring-bench-") as (settings, base):
        figures: dict[str, Any] = {
            "sync": sync_throughput(settings.scoring_url, settings.scoring_port, args.sync_requests),
            "latency": one_row_latency(settings.scoring_url, args.latency_requests),
        }
        if not args.sync_only:
            assert path is not None
            procs = _server_processes(settings.scoring_port)
            small_rows = max(1000, args.rows // 10)
            _reset_peaks(procs)
            async_throughput(settings, input_file(small_rows), small_rows)
            small_peak = _peak_mib(procs)
            _reset_peaks(procs)
            figures["async"] = async_throughput(settings, path, args.rows)
            large_peak = _peak_mib(procs)
            figures["async_memory"] = {
                "small_rows": small_rows,
                "small_peak_mib": small_peak,
                "large_peak_mib": large_peak,
                "ratio": large_peak / small_peak if small_peak else float("nan"),
                "processes": len(procs),
            }
            figures["pandas_baseline"] = pandas_baseline(path, args.rows)
            figures["user_models"] = user_model_rows(settings, base, path, args.rows)
    if "async" in figures:
        figures["async"]["ratio_vs_pandas"] = (
            figures["async"]["service_rows_per_s"] / figures["pandas_baseline"]["rows_per_s"]
        )
    figures["goals"] = GOALS
    return stamp(figures)


SHAPE_LABELS = {
    "json": '{"data": [row objects]}',
    "split": '{"dataframe_split": ...}',
    "csv_in_json": '{"csv": "<text>"}',
    "csv": "text/csv body",
}


def print_sync(s: dict[str, Any], lat: dict[str, float]) -> None:
    print(
        f"sync, {s['rows_per_request']:,} rows/request; baselines on the same rows, timed between the requests: "
        f"pyfunc predict {s['pyfunc_ms']:.1f} ms wall / {s['pyfunc_cpu_ms']:.1f} ms CPU "
        f"({s['pyfunc_rows_per_s']:,.0f} rows/s), sklearn predict_proba {s['sklearn_ms']:.1f} ms wall / "
        f"{s['sklearn_cpu_ms']:.1f} ms CPU; goal >= 0.7x; pyfunc predicts back to back (warm caches, the "
        f"baseline's best case): {s['pyfunc_back_to_back_ms']:.1f} ms"
    )
    header = (
        "shape",
        "rows/s",
        "vs pyfunc",
        "vs warm pyfunc",
        "vs sklearn",
        "wall p50 ms",
        "run() p50 ms",
        "server CPU ms",
        "CPU vs pyfunc",
        "client CPU ms",
    )
    lines: list[tuple[str, ...]] = [header]
    for shape, f in s["shapes"].items():
        lines.append((
            SHAPE_LABELS.get(shape, shape), f"{f['rows_per_s']:,.0f}", f"{f['ratio_vs_pyfunc']:.2f}x",
            f"{f['ratio_vs_pyfunc_back_to_back']:.2f}x", f"{f['ratio_vs_sklearn']:.2f}x", f"{f['wall_p50_ms']:.1f}",
            f"{f['run_fn_p50_ms']:.1f}", f"{f['server_cpu_ms_per_request']:.1f}",
            f"{f.get('cpu_ratio_vs_pyfunc', float('nan')):.2f}x", f"{f['client_cpu_ms_per_request']:.1f}",
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    print(
        f"1-row request p50 / p95: {lat['p50_ms']:.1f} / {lat['p95_ms']:.1f} ms (run() p50 {lat['run_fn_p50_ms']:.1f} "
        f"ms; pyfunc predict of 1 row p50 {lat['pyfunc_p50_ms']:.1f} ms); goal p50 <= 10 ms"
    )
    print(f"load average during the sync runs: {s['load_avg']}")


def print_table(f: dict[str, Any]) -> None:
    print_sync(f["sync"], f["latency"])
    if "async" not in f:
        return
    a, b = f["async"], f["pandas_baseline"]
    print(
        f"async {a['rows']:,}-row CSV: {a['service_rows_per_s']:,.0f} rows/s vs pandas script "
        f"{b['rows_per_s']:,.0f} rows/s = {a['ratio_vs_pandas']:.2f}x (goal >= 1.0x)"
    )
    print(
        f"async: {a['service_s']:.1f} s from POST to result (accepted in {a['accepted_ms']:.0f} ms; "
        f"{a['input_bytes'] / 2**20:.0f} MiB in, {a['output_bytes'] / 2**20:.0f} MiB out); pandas: read "
        f"{b['read_s']:.1f} s, predict {b['predict_s']:.1f} s, write {b['write_s']:.1f} s"
    )
    for kind, u in f.get("user_models", {}).items():
        ua, ub = u["async"], u["pandas_baseline"]
        print(
            f"async {ua['rows']:,}-row CSV, {kind}: {ua['service_rows_per_s']:,.0f} rows/s vs pandas script "
            f"{ub['rows_per_s']:,.0f} rows/s = {ua['ratio_vs_pandas']:.2f}x (goal >= 1.0x); {ua['service_s']:.1f} s "
            f"vs pandas read {ub['read_s']:.1f} s, predict {ub['predict_s']:.1f} s, write {ub['write_s']:.1f} s"
        )
    if "async_memory" in f:
        m = f["async_memory"]
        print(
            f"async peak RSS of the server ({m['processes']} processes): {m['large_peak_mib']:.0f} MiB for "
            f"{a['rows']:,} rows vs {m['small_peak_mib']:.0f} MiB for {m['small_rows']:,} rows = {m['ratio']:.2f}x "
            "(goal about 1.0x)"
        )
    print(f"load average at the end of the run: {f['machine']['load_avg']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the async CSV")
    parser.add_argument("--sync-requests", type=int, default=20)
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--sync-only", action="store_true", help="skip the async run (results file not written)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    figures = run(args)
    print_table(figures)
    if args.sync_only:
        return
    save(figures, RESULTS / "scoring.json")


if __name__ == "__main__":
    main()
