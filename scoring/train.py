"""Train an example model and save it as an MLflow model directory.

``python -m scoring.train [--kind churn|multiclass|regression] [--out DIR] [--rows N] [--seed S]``

The examples live in ``scoring.examples`` (see its docstring); the default is the churn classifier
written to ``scoring/model``, the model the local stack serves when given no other.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from scoring.examples import KINDS, examples

DEFAULT_OUT = Path("scoring/model")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, default="churn", help="which example model to train")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="MLflow model directory to write")
    parser.add_argument("--rows", type=int, help="generated rows (train + held-out; churn only)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = examples()[args.kind].train(args.out, args.rows, args.seed)
    print(summary)
    print(f"{args.kind} model saved to {args.out}")


if __name__ == "__main__":
    main()
