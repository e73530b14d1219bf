"""The compiled linear scorer against the model itself: same probabilities, same labels, only where proven."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from scoring.service.errors import RequestRejected
from scoring.service.linear import compile_linear
from scoring.service.model import SklearnClassifier, load_model, spec_of
from scoring.service.sync_api import score_csv_body, score_sync
from scoring.service.validation import Validator
from tests.support.models import label_and_probability

LEVELS = {"plan": ["basic", "plus", "pro, yearly"], "region": ["north", "south"]}


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "plan": rng.choice(LEVELS["plan"], n),
            "region": rng.choice(LEVELS["region"], n),
            "age": rng.integers(18, 90, n),
            "spend": rng.gamma(2.0, 40.0, n),
        }
    )


def _pipeline(**encoder: object) -> Pipeline:
    return Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("categories", OneHotEncoder(**encoder), ["plan", "region"]),  # type: ignore[arg-type]
                        ("numbers", StandardScaler(), ["age", "spend"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )


def _fit(pipeline: Pipeline, labels: tuple[object, object] = ("stay", "leave")) -> Pipeline:
    data = _rows(600, 1)
    score = (data["plan"] == "basic") * 1.5 + data["age"] / 40 - data["spend"] / 80
    y = np.where(score > np.median(score), labels[1], labels[0])
    return pipeline.fit(data, y)


def _save(pipeline: Pipeline, path: Path, levels: bool) -> Path:
    data = _rows(50, 2)
    mlflow.sklearn.save_model(
        pipeline,
        str(path),
        signature=infer_signature(data, pipeline.predict(data)),
        metadata={"category_levels": LEVELS} if levels else None,
        pip_requirements=["scikit-learn"],  # skips inferring them (a subprocess per save)
    )
    return path


@pytest.fixture(scope="module", params=[True, False], ids=["levels-in-metadata", "no-levels"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SklearnClassifier:
    path = _save(_fit(_pipeline(handle_unknown="ignore")), tmp_path_factory.mktemp("linear") / "m", request.param)
    loaded = load_model(path)
    assert isinstance(loaded, SklearnClassifier)
    return loaded


def test_the_standard_pipeline_compiles_and_matches_the_model(model: SklearnClassifier) -> None:
    assert model.linear is not None, "OneHotEncoder + StandardScaler + LogisticRegression should compile"
    rows = _rows(3000, 3)
    unseen = np.random.default_rng(3).random(len(rows)) < 0.1
    if model.spec.column("plan").levels is None:  # levels are only enforced where the metadata declares them
        rows.loc[unseen, "plan"] = "enterprise"
    rows.loc[unseen[::-1], "spend"] = 25_000.0  # far outside the training range
    body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    answer = json.loads(score_sync(body, model, Validator(model.spec, 20), 10_000))["predictions"]
    labels, want = label_and_probability(model.estimator, rows)
    assert [a["prediction"] for a in answer] == labels
    assert np.max(np.abs(np.asarray([a["probability"] for a in answer]) - want)) <= 1e-12


def test_compiled_and_model_paths_write_the_same_csv(model: SklearnClassifier) -> None:
    assert model.linear is not None
    text = _rows(500, 4).to_csv(index=False).encode()
    compiled = score_csv_body(text, model, Validator(model.spec, 20), 1000).decode().splitlines()
    model_only = SklearnClassifier(model.estimator, model.spec, model.path, compiled=False)
    assert model_only.linear is None
    plain = score_csv_body(text, model_only, Validator(model.spec, 20), 1000).decode().splitlines()
    assert compiled[0] == plain[0] and compiled[0].endswith(",prediction,probability")
    for a, b in zip(compiled[1:], plain[1:], strict=True):
        head_a, p_a = a.rsplit(",", 1)
        head_b, p_b = b.rsplit(",", 1)
        assert head_a == head_b and abs(float(p_a) - float(p_b)) <= 1e-12


def test_unseen_levels_reach_the_model_when_its_encoder_refuses_them(tmp_path: Path) -> None:
    model = load_model(_save(_fit(_pipeline(handle_unknown="error")), tmp_path / "m", levels=False))
    assert isinstance(model, SklearnClassifier) and model.linear is not None
    rows = _rows(5, 5)
    rows.loc[2, "plan"] = "enterprise"
    with pytest.raises(RequestRejected, match="unknown categor"):
        score_sync({"dataframe_records": rows.to_dict("records")}, model, Validator(model.spec, 20), 100)


def test_other_shapes_are_not_compiled(tmp_path: Path) -> None:
    spec = spec_of(mlflow.models.Model.load(str(_save(_fit(_pipeline()), tmp_path / "m", levels=True) / "MLmodel")))
    dropped = _fit(_pipeline(drop="first"))
    assert compile_linear(dropped, spec) is None
    three = _fit(_pipeline())
    three.steps.insert(0, ("noop", FunctionTransformer()))
    assert compile_linear(three, spec) is None


def test_a_multinomial_model_compiles_and_matches(tmp_path: Path) -> None:
    data = _rows(900, 6)
    labels = np.where(data["spend"] > 100, "big", np.where(data["age"] > 50, "senior", "other"))
    pipeline = _pipeline(handle_unknown="ignore").fit(data, labels)
    model = load_model(_save(pipeline, tmp_path / "m", levels=False))
    assert isinstance(model, SklearnClassifier) and model.linear is not None and not model.linear.binary
    rows = _rows(2000, 7)
    rows.loc[::9, "plan"] = "enterprise"  # unseen: an all-zero one-hot block
    body = {"dataframe_records": rows.to_dict("records")}
    answer = json.loads(score_sync(body, model, Validator(model.spec, 20), 10_000))["predictions"]
    labels, want = label_and_probability(pipeline, rows)
    assert [a["prediction"] for a in answer] == labels
    assert np.max(np.abs(np.asarray([a["probability"] for a in answer]) - want)) <= 1e-12


def test_a_scaler_that_scales_otherwise_is_not_trusted(tmp_path: Path) -> None:
    pipeline = _fit(_pipeline(handle_unknown="ignore"))
    spec = spec_of(mlflow.models.Model.load(str(_save(pipeline, tmp_path / "m", levels=False) / "MLmodel")))
    assert compile_linear(pipeline, spec) is not None
    scaler = pipeline.named_steps["features"].named_transformers_["numbers"]
    scaler.with_mean = False  # transform() now ignores mean_, which the compiled form would still subtract
    assert compile_linear(pipeline, spec) is None


def test_integer_labels_keep_their_type(tmp_path: Path) -> None:
    model = load_model(_save(_fit(_pipeline(handle_unknown="ignore"), labels=(0, 1)), tmp_path / "m", levels=False))
    rows = _rows(20, 7)
    answer = json.loads(score_sync({"instances": rows.to_dict("records")}, model, Validator(model.spec, 20), 100))
    assert [a["prediction"] for a in answer["predictions"]] == [int(v) for v in model.estimator.predict(rows)]
    assert all(type(a["prediction"]) is int for a in answer["predictions"])
