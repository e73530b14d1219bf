"""Example models and their data: what ``python -m scoring.train`` and ``python -m scoring.sample`` make.

The scoring service and the function app serve any MLflow model and never import this package. Each
example is one kind of model a user brings:

* ``churn``: a binary classifier (labels ``Yes``/``No``) on synthetic telco-churn data (``churn``);
* ``multiclass``: an iris classifier with string labels, from scikit-learn's bundled iris set (``iris``);
* ``regression``: a gradient-boosted regressor of disease progression, from the bundled diabetes set
  (``diabetes``), saved with skops and the trusted types it needs.

Each is saved as an MLflow model with a signature from ``infer_signature`` and pinned requirements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Example:
    kind: str
    description: str
    train: Callable[[Path, int | None, int | None], str]  # (out, rows, seed) -> a one-line quality summary
    frame: Callable[[int, int], pd.DataFrame]  # (rows, seed) -> input rows as a client sends them


def examples() -> dict[str, Example]:
    """Every example by kind (imported here, on demand, so the package itself stays light)."""
    from scoring.examples import diabetes, iris
    from scoring.examples.churn import sample as churn_sample
    from scoring.examples.churn import train as churn_train

    return {
        "churn": Example(
            "churn", "binary churn classifier (synthetic telco data)", churn_train.train_and_save, churn_sample.frame
        ),
        "multiclass": Example("multiclass", "iris classifier with string labels", iris.train_and_save, iris.frame),
        "regression": Example(
            "regression", "diabetes progression regressor (skops)", diabetes.train_and_save, diabetes.frame
        ),
    }


KINDS: tuple[str, ...] = ("churn", "multiclass", "regression")
