"""The churn data generator and the trained model: realistic effects, a held-out AUC floor, reproducibility."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from scoring.examples.churn.data import generate
from scoring.examples.churn.sample import frame
from scoring.examples.churn.train import save, train


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return generate(200_000, seed=5)


def _rate(data: pd.DataFrame, column: str) -> pd.Series:
    return (data["Churn"] == "Yes").groupby(data[column], observed=True).mean()


def test_churn_depends_on_the_columns_it_does_in_the_telco_data(data: pd.DataFrame) -> None:
    contract = _rate(data, "Contract")
    assert contract["Month-to-month"] > 2 * contract["One year"] > 2 * contract["Two year"]
    internet = _rate(data, "InternetService")
    assert internet["Fiber optic"] > internet["DSL"] > internet["No"]
    payment = _rate(data, "PaymentMethod")
    assert payment["Electronic check"] == payment.max()
    support = _rate(data[data["InternetService"] != "No"], "TechSupport")
    assert support["No"] > support["Yes"]
    short = data["tenure"] < 12
    assert (data["Churn"][short] == "Yes").mean() > 2 * (data["Churn"][~short] == "Yes").mean()
    assert 0.15 < (data["Churn"] == "Yes").mean() < 0.40


def test_the_same_seed_gives_the_same_rows() -> None:
    pd.testing.assert_frame_equal(generate(1000, seed=3), generate(1000, seed=3))
    assert not generate(1000, seed=3)["customerID"].equals(generate(1000, seed=4)["customerID"])


def test_held_out_auc_beats_the_floor_and_a_one_feature_baseline(data: pd.DataFrame) -> None:
    # Floor: the strongest single signal, "is the contract month-to-month", ranks customers with an AUC of
    # about 0.74 on this data; the trained model reaches about 0.89-0.90 (the generator's noise caps what
    # any model can do). 0.85 demands that the model combines the other effects (tenure, fiber, payment,
    # support...) while leaving room for seed-to-seed variation.
    pipeline, auc = train(rows=8_000, seed=9)
    held_out = generate(50_000, seed=10)
    baseline = roc_auc_score(held_out["Churn"] == "Yes", held_out["Contract"] == "Month-to-month")
    assert auc > 0.85
    assert auc > baseline + 0.05
    proba = pipeline.predict_proba(frame(50_000, 10))[:, 1]
    assert roc_auc_score(held_out["Churn"] == "Yes", proba) > 0.85


def test_training_is_reproducible() -> None:
    first, auc1 = train(rows=5000, seed=1)
    second, auc2 = train(rows=5000, seed=1)
    assert auc1 == auc2
    np.testing.assert_array_equal(first[-1].coef_, second[-1].coef_)


def test_saved_mlflow_model_has_signature_example_and_pyfunc_labels(tmp_path: Path) -> None:
    pipeline, auc = train(rows=5000, seed=2)
    save(pipeline, tmp_path / "model", auc, seed=2)
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    inputs = {c.name: c for c in model.metadata.get_input_schema().inputs}
    assert inputs["customerID"].required is False
    assert inputs["tenure"].type.name == "long" and inputs["Contract"].type.name == "string"
    assert set(model.predict(frame(50, 1))) <= {"Yes", "No"}
    assert (tmp_path / "model" / "input_example.json").exists()
    assert set(model.metadata.flavors) == {"python_function", "sklearn"}
    levels = model.metadata.metadata["category_levels"]
    assert levels["Contract"] == ["Month-to-month", "One year", "Two year"]
