"""Train the churn example model and save it as an MLflow model (sklearn + pyfunc flavors, skops format).

``python -m scoring.train --kind churn [--out scoring/model] [--rows N] [--seed S]`` runs
:func:`train_and_save`.

The same seed gives the same data, split and coefficients. The saved directory is ready for
``az ml model create --type mlflow_model --path <out>``: it carries a signature (``customerID`` is
optional, every feature is required), an input example, pinned pip requirements and, in the MLmodel
metadata, the category levels the scoring service validates against.

Model: scikit-learn's own ``ColumnTransformer`` (``OneHotEncoder`` over the known levels of the string
columns, unknown levels ignored; ``StandardScaler`` on the numbers) into a ``LogisticRegression``. It
matches gradient boosting's held-out ROC-AUC on this data. Only standard scikit-learn types, so the
model is saved in MLflow's default skops format and loads anywhere scikit-learn does, without this
repository's code; the scoring service recognises the shape and scores it in a compiled form.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, Schema, TensorSpec
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from scoring.examples.churn.data import generate
from scoring.examples.churn.schema import (
    CATEGORICAL_COLUMNS,
    CATEGORY_LEVELS,
    ID_COLUMN,
    INPUT_COLUMNS,
    LABEL_COLUMN,
    NUMERIC_COLUMNS,
    POSITIVE_LABEL,
)
from scoring.examples.common import SKLEARN_PACKAGES, clear_model_dir, pinned

logger = logging.getLogger(__name__)

DEFAULT_ROWS = 100_000
MIN_ROWS = 1000
DEFAULT_SEED = 7
TEST_FRACTION = 0.2
METADATA_CATEGORIES = "category_levels"
METADATA_AUC = "holdout_roc_auc"


def build_pipeline() -> Pipeline:
    features = ColumnTransformer(
        [
            (
                "categories",
                OneHotEncoder(
                    categories=[list(CATEGORY_LEVELS[c]) for c in CATEGORICAL_COLUMNS], handle_unknown="ignore"
                ),
                list(CATEGORICAL_COLUMNS),
            ),
            ("numbers", StandardScaler(), list(NUMERIC_COLUMNS)),
        ]
    )
    return Pipeline([("features", features), ("model", LogisticRegression(C=1.0, max_iter=1000))])


def signature(example: pd.DataFrame, labels: np.ndarray) -> ModelSignature:
    """``infer_signature`` of the input rows and their string labels, ``customerID`` optional (not a feature)."""
    inferred = infer_signature(example, pd.Series(labels, dtype=str))
    assert inferred.inputs is not None
    inputs: list[ColSpec | TensorSpec] = []
    for spec in inferred.inputs.inputs:
        assert isinstance(spec, ColSpec)
        inputs.append(ColSpec(spec.type, spec.name, required=spec.name != ID_COLUMN))
    return ModelSignature(inputs=Schema(inputs), outputs=inferred.outputs)


def as_plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Input columns as a client sends them: strings instead of pandas categoricals."""
    return frame[list(INPUT_COLUMNS)].astype({name: str for name in CATEGORICAL_COLUMNS})


def train(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> tuple[Pipeline, float]:
    """Fitted pipeline and its ROC-AUC on a held-out split of the generated data."""
    data = generate(rows, seed)
    rng = np.random.default_rng(seed)
    test = rng.random(len(data)) < TEST_FRACTION
    x = as_plain_frame(data)
    # String labels, so the pyfunc flavor predicts "Yes"/"No" and predict_proba's second column is P(Yes).
    y = data[LABEL_COLUMN].astype(str).to_numpy()
    pipeline = build_pipeline().fit(x[~test], y[~test])
    positive = list(pipeline.classes_).index(POSITIVE_LABEL)
    auc = float(roc_auc_score(y[test] == POSITIVE_LABEL, pipeline.predict_proba(x[test])[:, positive]))
    return pipeline, auc


def save(pipeline: Pipeline, out: Path, auc: float, seed: int) -> None:
    target = clear_model_dir(out)
    rows = as_plain_frame(generate(1000, seed + 1, label=False))
    mlflow.sklearn.save_model(
        pipeline,
        target,
        signature=signature(rows, pipeline.predict(rows)),
        input_example=rows.head(3),
        pip_requirements=pinned(SKLEARN_PACKAGES),
        metadata={METADATA_CATEGORIES: {k: list(v) for k, v in CATEGORY_LEVELS.items()}, METADATA_AUC: round(auc, 4)},
    )


def train_and_save(out: Path, rows: int | None = None, seed: int | None = None) -> str:
    rows = DEFAULT_ROWS if rows is None else rows
    seed = DEFAULT_SEED if seed is None else seed
    if rows < MIN_ROWS:
        raise SystemExit(f"--rows must be at least {MIN_ROWS} for a meaningful held-out split")
    started = time.perf_counter()
    pipeline, auc = train(rows, seed)
    save(pipeline, out, auc, seed)
    logger.info("trained on %d rows (seed %d) in %.1f s", rows, seed, time.perf_counter() - started)
    return f"held-out ROC-AUC: {auc:.4f}"
