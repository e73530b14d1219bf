"""The feature step the service computes for ordinal-encoded pipelines, against the model itself: the same
predictions, in one batch or in parts, and only where proven."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import skops.io
from mlflow.models import Model, infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder, StandardScaler

from scoring.service.errors import RequestRejected
from scoring.service.model import SklearnClassifier, SklearnRegressor, load_model, spec_of
from scoring.service.ordinal import compile_ordinal
from scoring.service.spec import ModelSpec
from scoring.service.sync_api import score_csv_body, score_sync
from scoring.service.validation import Validator
from tests.support.models import label_and_probability

PLANS = ["basic", "plus", "pro, yearly"]


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "plan": rng.choice(PLANS, n),
            "region": rng.choice(["north", "south"], n),
            "age": rng.integers(18, 90, n),
            "spend": rng.gamma(2.0, 40.0, n),
        }
    )


def _features(**encoder: Any) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("categories", OrdinalEncoder(**encoder), ["plan", "region"]),
            ("numbers", "passthrough", ["age", "spend"]),
        ]
    )


def _classifier(**encoder: Any) -> Pipeline:
    data = _rows(800, 1)
    y = np.where((data["plan"] == "basic") & (data["spend"] > 60) | (data["age"] > 75), "leave", "stay")
    trees = HistGradientBoostingClassifier(max_iter=40, categorical_features=[0, 1], random_state=0)
    return Pipeline([("features", _features(**encoder)), ("trees", trees)]).fit(data, y)


def _regressor() -> Pipeline:
    data = _rows(800, 2)
    y = data["spend"] * (data["plan"] == "basic") + data["age"]
    trees = HistGradientBoostingRegressor(max_iter=40, categorical_features=[0, 1], random_state=0)
    return Pipeline(
        [("features", _features(handle_unknown="use_encoded_value", unknown_value=-1)), ("trees", trees)]
    ).fit(data, y)


def _save(pipeline: Pipeline, path: Path) -> Path:
    data = _rows(50, 3)
    mlflow.sklearn.save_model(
        pipeline,
        str(path),
        signature=infer_signature(data, pipeline.predict(data)),
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
        pip_requirements=["scikit-learn"],  # skips inferring them (a subprocess per save)
    )
    return path


def _spec(tmp_path: Path) -> ModelSpec:
    return spec_of(Model.load(str(_save(_classifier(), tmp_path / "spec") / "MLmodel")))


def _with_unseen(rows: pd.DataFrame) -> pd.DataFrame:
    rows.loc[::7, "plan"] = "enterprise"
    rows.loc[::11, "spend"] = 25_000.0  # far outside the training range
    return rows


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> SklearnClassifier:
    pipeline = _classifier(handle_unknown="use_encoded_value", unknown_value=np.nan)
    loaded = load_model(_save(pipeline, tmp_path_factory.mktemp("ordinal") / "m"), predict_parts=2)
    assert isinstance(loaded, SklearnClassifier)
    return loaded


def test_an_ordinal_encoded_classifier_gets_the_service_s_features_and_the_model_s_answers(
    classifier: SklearnClassifier,
) -> None:
    assert classifier.linear is None and classifier.ordinal is not None
    assert "ordinal features computed by the service" in classifier.describe()
    rows = _with_unseen(_rows(3000, 4))
    body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    answer = json.loads(score_sync(body, classifier, Validator(classifier.spec, 20), 100_000))["predictions"]
    labels, probability = label_and_probability(classifier.estimator, rows)
    assert [a["prediction"] for a in answer] == labels
    assert np.array_equal(np.asarray([a["probability"] for a in answer]), probability)


def test_a_large_batch_predicted_in_parts_equals_the_model_on_the_whole(classifier: SklearnClassifier) -> None:
    ordinal = classifier.ordinal
    assert ordinal is not None and ordinal.parts == 2 and ordinal.pool is not None
    rows = _with_unseen(_rows(12_000, 5))  # over parts x 5,000 rows: predicted in two row ranges at once
    checked = Validator(classifier.spec, 20).check_arrow(pa.Table.from_pandas(rows, preserve_index=False))
    matrix = ordinal.matrix(checked)
    assert matrix is not None
    assert np.array_equal(ordinal.call("predict_proba", matrix), classifier.estimator.predict_proba(rows))
    assert np.array_equal(ordinal.call("predict", matrix), classifier.estimator.predict(rows))


def test_the_service_s_features_and_the_model_s_write_the_same_csv(classifier: SklearnClassifier) -> None:
    text = _with_unseen(_rows(500, 6)).to_csv(index=False).encode()
    fast = score_csv_body(text, classifier, Validator(classifier.spec, 20), 1000)
    plain_model = SklearnClassifier(classifier.estimator, classifier.spec, classifier.path, compiled=False)
    assert plain_model.ordinal is None
    assert fast == score_csv_body(text, plain_model, Validator(classifier.spec, 20), 1000)


def test_a_regressor_with_its_own_unknown_code_matches_the_model(tmp_path: Path) -> None:
    model = load_model(_save(_regressor(), tmp_path / "m"), predict_parts=2)
    assert isinstance(model, SklearnRegressor) and model.ordinal is not None
    rows = _with_unseen(_rows(11_000, 7))
    answer = json.loads(score_sync({"dataframe_records": rows.to_dict("records")}, model, Validator(model.spec, 20),
                                   100_000))["predictions"]  # fmt: skip
    assert np.array_equal(np.asarray([a["prediction"] for a in answer]), model.estimator.predict(rows))


def test_unseen_levels_reach_the_model_when_its_encoder_refuses_them(tmp_path: Path) -> None:
    model = load_model(_save(_classifier(handle_unknown="error"), tmp_path / "m"))
    assert isinstance(model, SklearnClassifier) and model.ordinal is not None
    rows = _rows(5, 8)
    assert len(json.loads(score_sync({"dataframe_records": rows.to_dict("records")}, model,
                                     Validator(model.spec, 20), 100))["predictions"]) == 5  # fmt: skip
    rows.loc[2, "plan"] = "enterprise"
    with pytest.raises(RequestRejected, match="unknown categor"):
        score_sync({"dataframe_records": rows.to_dict("records")}, model, Validator(model.spec, 20), 100)


def test_other_shapes_keep_the_model_s_own_feature_step(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert compile_ordinal(_classifier(), spec) is not None
    pandas_out = _classifier()
    pandas_out.named_steps["features"].set_output(transform="pandas")
    assert compile_ordinal(pandas_out, spec) is None
    scaled = _classifier()
    scaled.steps[0] = ("features", ColumnTransformer([("categories", OrdinalEncoder(), ["plan", "region"]),
                                                      ("numbers", StandardScaler(), ["age", "spend"])]))  # fmt: skip
    assert compile_ordinal(scaled.fit(_rows(100, 9), ["a", "b"] * 50), spec) is None
    numbers_encoded = _classifier()
    numbers_encoded.steps[0] = ("features", ColumnTransformer([("all", OrdinalEncoder(), ["plan", "age"])]))
    assert compile_ordinal(numbers_encoded.fit(_rows(100, 9), ["a", "b"] * 50), spec) is None
    narrow = _classifier(dtype=np.float32)
    assert compile_ordinal(narrow, spec) is None
    assert compile_ordinal(_classifier().named_steps["trees"], spec) is None


def test_steps_that_answer_for_the_batch_rather_than_each_row_are_not_trusted(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    pipeline = _classifier()
    # a step after the features whose output depends on the other rows of the batch: parts would differ
    centred = FunctionTransformer(lambda x: x - x.mean(axis=0))
    data = _rows(800, 1)
    pipeline = Pipeline([("features", _features()), ("centre", centred), ("trees", pipeline.named_steps["trees"])])
    pipeline.fit(data, np.where(data["age"] > 50, "old", "young"))
    assert compile_ordinal(pipeline, spec) is None


def test_a_feature_step_whose_transform_is_not_what_its_parts_say_is_not_trusted(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    pipeline = _classifier(handle_unknown="use_encoded_value", unknown_value=np.nan)
    assert compile_ordinal(pipeline, spec) is not None
    features = pipeline.named_steps["features"]
    own = features.transform
    features.transform = lambda x: own(x) + 1.0  # still a ColumnTransformer of the same parts, transforming otherwise
    assert compile_ordinal(pipeline, spec) is None
