"""The multiclass example: an iris classifier with string labels (StandardScaler + LogisticRegression).

Trained on scikit-learn's bundled iris set (nothing downloaded), saved with MLflow's defaults (skops).
:func:`frame` makes any number of plausible flowers for sample files: bundled rows, resampled, with a
little noise, rounded to millimetres as measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from scoring.examples.common import save_example

COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
DEFAULT_SEED = 7
TEST_FRACTION = 0.3
_NOISE_CM = 0.1


def dataset() -> tuple[pd.DataFrame, np.ndarray]:
    """The 150 bundled flowers (columns :data:`COLUMNS`, in cm) and their species names."""
    data = load_iris(as_frame=True)
    x = data.data.set_axis(list(COLUMNS), axis=1)
    return x, np.asarray(data.target_names, dtype=object)[data.target.to_numpy()]


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, _ = dataset()
    picked = x.to_numpy()[rng.integers(0, len(x), rows)]
    noisy = np.clip(picked + rng.normal(0.0, _NOISE_CM, picked.shape), 0.1, None).round(1)
    return pd.DataFrame(noisy, columns=list(COLUMNS))


def train(seed: int = DEFAULT_SEED) -> tuple[Pipeline, float]:
    """Fitted pipeline and its accuracy on a held-out, stratified split."""
    x, y = dataset()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, random_state=seed, stratify=y)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    return pipeline, float(pipeline.score(x_test, y_test))


def train_and_save(out: Path, rows: int | None = None, seed: int | None = None) -> str:
    if rows is not None:
        raise SystemExit("the multiclass example trains on the 150 bundled iris rows; --rows does not apply")
    pipeline, accuracy = train(DEFAULT_SEED if seed is None else seed)
    x, _ = dataset()
    save_example(pipeline, out, x, {"holdout_accuracy": round(accuracy, 4)})
    return f"held-out accuracy: {accuracy:.4f}"
