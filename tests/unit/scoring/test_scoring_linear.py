"""The compiled linear scorer against the MLflow model itself: same probabilities, same labels, same outputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from scoring.sample import frame
from scoring.service.linear import compile_linear
from scoring.service.model import ChurnModel
from scoring.service.sync_api import score_csv_body, score_sync
from scoring.service.validation import Validator

ROWS = 4000
UNKNOWN = {"Contract": "Quarterly", "PaymentMethod": "Cash", "gender": "", "InternetService": "fiber optic"}


@pytest.fixture(scope="module")
def model(churn_model_dir: Path) -> ChurnModel:
    return ChurnModel.load(churn_model_dir.parent)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """Generated rows with unknown levels in about a tenth of them, and numbers beyond the training range."""
    data = frame(ROWS, seed=31)
    rng = np.random.default_rng(31)
    for name, value in UNKNOWN.items():
        data.loc[rng.random(ROWS) < 0.1, name] = value
    data.loc[rng.random(ROWS) < 0.05, "TotalCharges"] = 25_000.0
    return data


def _codes(model: ChurnModel, data: pd.DataFrame) -> dict[str, np.ndarray]:
    """Level positions per the model signature, -1 for values that are not a level (the scorer's contract)."""
    assert model.linear is not None
    codes = {}
    for name in model.linear.weights:
        levels = model.spec.column(name).levels or ()
        lookup = {level: i for i, level in enumerate(levels)}
        codes[name] = np.asarray([lookup.get(v, -1) for v in data[name]], dtype=np.int64)
    return codes


def test_compiled_scorer_matches_pyfunc_labels_and_sklearn_probabilities(
    model: ChurnModel, rows: pd.DataFrame, churn_model_dir: Path
) -> None:
    assert model.linear is not None, "the churn pipeline should compile"
    numbers = {name: rows[name].to_numpy(dtype=np.float64) for name, *_ in model.linear.numeric}
    decision = model.linear.decision(_codes(model, rows), numbers)
    proba = model.linear.probability(decision)
    labels = np.where(decision > 0, model.label_texts[1], model.label_texts[0])

    pipeline = mlflow.sklearn.load_model(str(churn_model_dir))
    expected = pipeline.predict_proba(rows)[:, list(pipeline.classes_).index("Yes")]
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-12)
    pyfunc_labels = np.asarray(mlflow.pyfunc.load_model(str(churn_model_dir)).predict(rows))
    np.testing.assert_array_equal(labels, pyfunc_labels)
    assert 0.1 < (labels == "Yes").mean() < 0.9  # both labels are exercised


def test_service_answers_the_same_with_and_without_the_compiled_scorer(
    model: ChurnModel, churn_model_dir: Path
) -> None:
    plain = ChurnModel.load(churn_model_dir.parent, compiled=False)
    assert plain.linear is None
    data = frame(2000, seed=32)
    text = data.to_csv(index=False)
    records = {"data": json.loads(data.to_json(orient="records"))}

    def answers(candidate: ChurnModel) -> tuple[bytes, str | bytes]:
        validator = Validator(candidate.spec, 20)
        return score_csv_body(text, candidate, validator, 5000), score_sync(records, candidate, validator, 5000)

    assert answers(model) == answers(plain)


def test_other_pipelines_are_not_compiled(model: ChurnModel) -> None:
    features, regression = model.pipeline.steps[0][1], model.pipeline.steps[1][1]
    extra_step = Pipeline([("features", features), ("identity", FunctionTransformer()), ("model", regression)])
    assert compile_linear(extra_step, model.spec, 1) is None
    assert compile_linear(regression, model.spec, 1) is None


def test_compiled_weights_come_from_the_pipeline_at_hand(model: ChurnModel) -> None:
    changed = copy.deepcopy(model.pipeline)
    changed.steps[0][1].scale_ = changed.steps[0][1].scale_ * 2
    scorer = compile_linear(changed, model.spec, 1)
    assert scorer is not None
    data = frame(200, seed=33)
    numbers = {name: data[name].to_numpy(dtype=np.float64) for name, *_ in scorer.numeric}
    got = scorer.probability(scorer.decision(_codes(model, data), numbers))
    np.testing.assert_allclose(got, changed.predict_proba(data)[:, 1], rtol=0, atol=1e-12)
    assert np.abs(got - model.pipeline.predict_proba(data)[:, 1]).max() > 1e-6


def test_a_transformer_of_the_same_name_that_encodes_otherwise_is_not_trusted(model: ChurnModel) -> None:
    original = model.pipeline.steps[0][1]

    class ChurnFeatures(type(original)):  # type: ignore[misc]
        def transform(self, X: pd.DataFrame) -> np.ndarray:
            out = super().transform(X)
            out[:, -1] = 0.0  # drops the last numeric column
            return out

    impostor = copy.deepcopy(original)
    impostor.__class__ = ChurnFeatures
    pipeline = Pipeline([("features", impostor), ("model", model.pipeline.steps[1][1])])
    assert compile_linear(pipeline, model.spec, 1) is None
    assert compile_linear(Pipeline([("features", original), ("model", pipeline.steps[1][1])]), model.spec, 1)
