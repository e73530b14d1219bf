"""What telemetry costs: the pipeline with telemetry on (the local stack's default: spans and metrics written
as JSON lines under ``<base dir>/telemetry``) vs off (``TELEMETRY_DISABLED=true``), measured in the same run.

Each round starts an isolated stack in one mode and measures one large CSV (default 1,000,000 rows: rows/s from
drop to output) and a burst of small files (default 200 files of 100 rows in one session: files/s); rounds
alternate off, on, off, on, ... so drift of the shared machine falls on both modes alike, and each mode's
figure is its best round. Goal: on costs at most 3% (ratio on/off >= 0.97).

    python -m benchmarks.telemetry_bench [--rows N] [--files N] [--rounds N] [--quick]

Results go to ``benchmarks/results/telemetry.json``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from benchmarks.figures import save
from benchmarks.pipeline_bench import Dropper, ensure_model, print_table, run_burst, run_large, sample_file, small_files
from devstack.stack import LocalStack
from tests.support.flow import REPO, isolated_settings, load_average

logger = logging.getLogger(__name__)

RESULTS = REPO / "benchmarks" / "results" / "telemetry.json"
GOAL_RATIO = 0.97
MODES = {"off": {"TELEMETRY_DISABLED": "true"}, "on": {}}


def one_round(mode: str, large: Path, rows: int, files: list[bytes], timeout: float) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"telemetry-bench-{mode}-"))
    stack = LocalStack(isolated_settings(base, MODES[mode]), report=lambda line: logger.info("%s", line))
    try:
        stack.up()
        with BlobServiceClient.from_connection_string(stack.settings.storage_connection_string) as service:
            dropper = Dropper(service, stack)
            run_burst(dropper, stack, files[:5], timeout, shared_session=True)  # warm-up
            burst = run_burst(dropper, stack, files[5:], timeout, shared_session=True)
            big = run_large(dropper, stack, large, rows, timeout)
        spans = sum(len(p.read_text().splitlines()) for p in (base / "telemetry").glob("spans-*.jsonl"))
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)
    return {"mode": mode, "files_per_s": burst["files_per_s"], "rows_per_s": big["rows_per_s"], "spans": spans}


def span_cost_us(count: int = 20_000) -> float:
    """CPU microseconds per span (8 attributes) through the local stack's exporter (BatchSpanProcessor + JSON
    lines to a file), export included: a bound on what telemetry adds per span, free of the stack's noise."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "spans.jsonl").open("w") as out:
        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(
                ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n"),
                max_queue_size=count,  # nothing dropped: every span is exported and paid for
            )
        )
        tracer = provider.get_tracer("bench")
        attributes = {f"inference.attr{i}": f"value-{i}" for i in range(8)}
        started = time.process_time()
        for _ in range(count):
            with tracer.start_as_current_span("stage", attributes=attributes):
                pass
        provider.force_flush()
        elapsed = time.process_time() - started
        provider.shutdown()
    return elapsed / count * 1e6


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_model()
    large = sample_file(args.rows)
    files = small_files(args.files + 5, 100)
    rounds = [one_round(mode, large, args.rows, files, args.timeout) for _ in range(args.rounds) for mode in MODES]
    best = {
        mode: {key: max(r[key] for r in rounds if r["mode"] == mode) for key in ("files_per_s", "rows_per_s")}
        for mode in MODES
    }
    spans_per_file = max(r["spans"] for r in rounds) / (args.files + 6)  # the burst, its warm-up and the large file
    return {
        "span_cost_us": span_cost_us(),
        "spans_per_file": spans_per_file,
        "rounds": rounds,
        "best": best,
        "large_ratio_on_vs_off": best["on"]["rows_per_s"] / best["off"]["rows_per_s"],
        "burst_ratio_on_vs_off": best["on"]["files_per_s"] / best["off"]["files_per_s"],
        "goal_ratio": GOAL_RATIO,
        "settings": {"rows": args.rows, "files": args.files, "rounds": args.rounds},
        "load_avg_after": load_average(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def table(f: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    on, off, s = f["best"]["on"], f["best"]["off"], f["settings"]
    goal = f">= {f['goal_ratio']:.2f}x"
    return [
        (f"telemetry on: {s['rows']:,}-row CSV rows/s", f"{on['rows_per_s']:,.0f}",
         f"telemetry off {off['rows_per_s']:,.0f}", f"{f['large_ratio_on_vs_off']:.3f}x", goal),
        (f"telemetry on: burst of {s['files']} small files, files/s", f"{on['files_per_s']:.1f}",
         f"telemetry off {off['files_per_s']:.1f}", f"{f['burst_ratio_on_vs_off']:.3f}x", goal),
        ("telemetry: CPU per span, exported (us)", f"{f['span_cost_us']:.0f}",
         f"{f['spans_per_file']:.1f} spans per file", "", ""),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.telemetry_bench", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3, help="rounds per mode (off and on alternate)")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--quick", action="store_true", help="50,000 rows, 40 files, one round per mode")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.files, args.rounds = 50_000, 40, 1
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    figures = run(args)
    print_table(table(figures))
    for r in figures["rounds"]:
        print(f"  {r['mode']:>3}: {r['rows_per_s']:,.0f} rows/s, {r['files_per_s']:.1f} files/s, {r['spans']} spans")
    save(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
