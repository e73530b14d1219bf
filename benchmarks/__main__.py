"""All benchmarks from one entry point: ``python -m benchmarks [--quick] [--only NAME ...]`` (``make bench``).

Runs the Service Bus emulator benchmark, the scoring server benchmark, the Parquet scoring benchmark, the
pipeline benchmark and the telemetry on/off benchmark one after the other, each in its own process (they start
their own services on free ports), then prints one table of their headline figures, each beside its same-run
baseline. Each benchmark writes its
full figures to ``benchmarks/results/<name>.json``; the combined table goes to ``benchmarks/results/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.pipeline_bench import print_table
from benchmarks.pipeline_bench import table as pipeline_rows
from benchmarks.telemetry_bench import table as telemetry_rows

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

Row = tuple[str, str, str, str, str]


def servicebus_rows(f: dict[str, Any]) -> list[Row]:
    phases = {p["name"]: p for p in f["phases"]}
    rows: list[Row] = []
    baseline = f["baseline"]["client_batch_build_msgs_per_s"]
    for name, phase in phases.items():
        rate = phase["messages"] / phase["seconds"]
        goal = phase.get("goal")
        ratio = f"{rate / baseline:.2f}x of client" if name.startswith("send") else ""
        rows.append((f"emulator {name} msgs/s", f"{rate:,.0f}", f"client builds {baseline:,.0f}/s" if ratio else "",
                     ratio, f">= {goal:,.0f}" if goal else ""))  # fmt: skip
    return rows


def scoring_rows(f: dict[str, Any]) -> list[Row]:
    s, lat, a, b = f["sync"], f["latency"], f["async"], f["pandas_baseline"]
    sync = [(kind, s[f"server_{kind}rows_per_s"], s[f"{kind}ratio_vs_pyfunc"])
            for kind in ("", "json_", "csv_") if f"server_{kind}rows_per_s" in s]  # fmt: skip
    return [
        *((f"scoring sync rows/s (10k {kind.rstrip('_').upper() or 'JSON'} rows/request)", f"{rate:,.0f}",
           f"pyfunc predict {s['pyfunc_rows_per_s']:,.0f}", f"{ratio:.2f}x", ">= 0.7x") for kind, rate, ratio in sync),
        ("scoring 1-row request p50 / p95 (ms)", f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}",
         f"pyfunc p50 {lat['pyfunc_p50_ms']:.1f}", "", "p50 <= 10 ms"),
        (f"scoring async {a['rows']:,}-row CSV rows/s", f"{a['service_rows_per_s']:,.0f}",
         f"pandas script {b['rows_per_s']:,.0f}", f"{a['ratio_vs_pandas']:.2f}x", ">= 1.0x"),
    ]  # fmt: skip


def parquet_rows(f: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for kind, m in f["models"].items():
        a, b = m["async"], m["pandas_baseline"]
        measure = f"scoring async {a['rows']:,}-row Parquet rows/s ({kind})"
        baseline = f"pandas script {b['rows_per_s']:,.0f}"
        rows.append((measure, f"{a['service_rows_per_s']:,.0f}", baseline, f"{a['ratio_vs_pandas']:.2f}x", ">= 1.0x"))
    return rows


BENCHMARKS: dict[str, tuple[str, list[str], list[str], Callable[[dict[str, Any]], list[Row]]]] = {
    # name: (module, full-run arguments, --quick arguments, table rows from its JSON)
    "servicebus": ("benchmarks.servicebus_bench", [], ["--messages", "2000"], servicebus_rows),
    "scoring": (
        "benchmarks.scoring_bench",
        [],
        ["--rows", "50000", "--sync-requests", "5", "--latency-requests", "50"],
        scoring_rows,
    ),
    "parquet": ("benchmarks.parquet_bench", [], ["--rows", "50000"], parquet_rows),
    "pipeline": ("benchmarks.pipeline_bench", [], ["--quick"], pipeline_rows),
    "telemetry": ("benchmarks.telemetry_bench", [], ["--quick"], telemetry_rows),
}


def _when(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="minutes")


def _rows(name: str, result: Path, to_rows: Callable[[dict[str, Any]], list[Row]]) -> list[Row]:
    try:
        return to_rows(json.loads(result.read_text()))
    except (KeyError, TypeError, ValueError) as exc:
        return [(f"{name}: figures not recognised ({type(exc).__name__}: {exc}); see {result.name}", "", "", "", "")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke runs of every benchmark")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these (others: last figures)")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    failed = []
    load = [os.getloadavg()]
    for name, (module, full, small, to_rows) in BENCHMARKS.items():
        result = RESULTS / f"{name}.json"
        if args.only and name not in args.only:
            if result.exists():
                rows.append((f"{name}: not run now; figures of an earlier run ({_when(result)})", "", "", "", ""))
                rows.extend(_rows(name, result, to_rows))
            continue
        started = time.time()
        print(f"--- {name} ({module})", flush=True)
        done = subprocess.run([sys.executable, "-m", module, *(small if args.quick else full)], cwd=REPO, check=False)
        load.append(os.getloadavg())
        if done.returncode != 0 or not result.exists() or result.stat().st_mtime < started:
            failed.append(name)
            rows.append((f"{name}: FAILED (exit {done.returncode})", "", "", "", ""))
            continue
        rows.extend(_rows(name, result, to_rows))
    print("\n=== summary" + (" (--quick: smoke-run sizes, not the goals' sizes)" if args.quick else ""))
    print_table(rows)
    print(f"{os.cpu_count()} CPUs; load average (1/5/15 min) before and after each benchmark: "
          + "; ".join("/".join(f"{v:.1f}" for v in sample) for sample in load))  # fmt: skip
    summary = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "rows": [dict(zip(("measure", "measured", "baseline", "ratio", "goal"), r, strict=True)) for r in rows],
        "load_avg": load,
        "failed": failed,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
