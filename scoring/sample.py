"""Write a sample input file for an example model: CSV, JSON Lines or Parquet, good or deliberately bad.

``python -m scoring.sample [--kind churn|multiclass|regression] --rows N --format csv|jsonl|parquet
[--gzip] --out FILE [--seed S] [--bad KIND] [--row-group-rows N]``

Bad files (``--bad``) exist for the churn example; ``scoring.examples.churn.sample`` lists their kinds.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

from scoring.examples import KINDS, examples
from scoring.examples.churn.sample import BAD_KINDS, sample_bytes
from scoring.examples.files import FORMATS, GZIP_LEVEL, PARQUET_ROW_GROUP_ROWS, encode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, default="churn", help="which example model the rows are for")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--format", choices=FORMATS, default="csv")
    parser.add_argument("--gzip", action="store_true", help="gzip-compress the file (CSV and JSON Lines)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad", choices=sorted(BAD_KINDS), help="write a deliberately bad file (churn only)")
    parser.add_argument("--row-group-rows", type=int, default=PARQUET_ROW_GROUP_ROWS, help="Parquet row group size")
    args = parser.parse_args(argv)
    if args.gzip and args.format == "parquet":
        parser.error("Parquet files are compressed inside; --gzip applies to CSV and JSON Lines")
    if args.bad and args.kind != "churn":
        parser.error("--bad files exist for the churn example only")
    if args.bad in ("some-bad-rows", "ragged") and args.rows < 10:
        parser.error(f"--bad {args.bad} needs at least 10 rows")
    if args.kind == "churn":
        try:
            data = sample_bytes(
                args.rows,
                args.format,
                seed=args.seed,
                bad=args.bad,
                compress=args.gzip,
                row_group_rows=args.row_group_rows,
            )
        except ValueError as exc:
            parser.error(str(exc))
    else:
        data = encode(
            examples()[args.kind].frame(args.rows, args.seed), args.format, row_group_rows=args.row_group_rows
        )
        data = gzip.compress(data, compresslevel=GZIP_LEVEL) if args.gzip else data
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
