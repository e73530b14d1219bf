"""Async scoring of a Parquet file through the real AML inference server, against a plain pandas script.

Starts Azurite, the Service Bus emulator and ``azmlinfsrv`` (the example model in scoring/model) on free
loopback ports in a temporary folder, then scores a 1,000,000-row Parquet file (row groups of 100,000
rows) through the async route: from the POST to the result message, the output Parquet file staged to
the results container. The baseline, measured in the same run on the same file from local disk, is
what a user would write instead: ``pd.read_parquet`` + ``predict_proba`` (or ``predict``) + ``to_parquet``
with the added columns (goal >= 1.0x). The same for the two ordinary user pipelines of the scoring
benchmark (``HistGradientBoostingClassifier`` / ``HistGradientBoostingRegressor``), each on its own server.

    python -m benchmarks.parquet_bench [--rows N]

The table is printed and the figures are written to ``benchmarks/results/parquet.json``. The input file is
cached in ``benchmarks/data/`` (not committed).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from benchmarks.figures import RESULTS, save, stamp
from benchmarks.scoring_bench import DATA, MODEL, async_throughput, scoring_stack, user_model_rows, with_baseline
from scoring.examples.churn.sample import sample_bytes

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 100_000
GOAL = 1.0


def input_file(rows: int) -> Path:
    path = DATA / f"churn-{rows}-rg{ROW_GROUP_ROWS}.parquet"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sample_bytes(rows, "parquet", seed=103, row_group_rows=ROW_GROUP_ROWS))
    return path


def run(rows: int) -> dict[str, Any]:
    path = input_file(rows)
    figures: dict[str, Any] = {"rows": rows, "row_group_rows": ROW_GROUP_ROWS}
    with scoring_stack("parquet-bench-") as (settings, base):
        churn = with_baseline(async_throughput(settings, path, rows), path, rows, MODEL)
        figures["models"] = {"churn": churn, **user_model_rows(settings, base, path, rows)}
    figures["goal"] = GOAL
    return stamp(figures)


def print_table(f: dict[str, Any]) -> None:
    for kind, m in f["models"].items():
        a, b = m["async"], m["pandas_baseline"]
        print(
            f"async {a['rows']:,}-row Parquet, {kind}: {a['service_rows_per_s']:,.0f} rows/s vs pandas script "
            f"{b['rows_per_s']:,.0f} rows/s = {a['ratio_vs_pandas']:.2f}x (goal >= {f['goal']:.1f}x); "
            f"{a['service_s']:.1f} s ({a['input_bytes'] / 2**20:.0f} MiB in, {a['output_bytes'] / 2**20:.0f} MiB out) "
            f"vs pandas read {b['read_s']:.1f} s, predict {b['predict_s']:.1f} s, write {b['write_s']:.1f} s"
        )
    print(f"load average at the end of the run: {f['machine']['load_avg']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the Parquet file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    figures = run(args.rows)
    print_table(figures)
    save(figures, RESULTS / "parquet.json")


if __name__ == "__main__":
    main()
