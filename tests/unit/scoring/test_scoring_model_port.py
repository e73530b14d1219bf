"""The model port: which models load, which are refused at start and how, and the types validation reads."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from scoring.service.errors import RequestRejected
from scoring.service.model import (
    ModelLoadError,
    PyfuncModel,
    SklearnClassifier,
    SklearnRegressor,
    limit_native_threads,
    load_model,
)
from scoring.service.sync_api import score_csv_body, score_sync
from scoring.service.validation import Validator

REQUIREMENTS = ["scikit-learn"]  # given, so MLflow does not infer them in a subprocess per save


def _xy(rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    return x, (x["a"] + x["b"] > 0).to_numpy()


def test_a_model_without_a_signature_is_refused_naming_infer_signature(tmp_path: Path) -> None:
    x, y = _xy()
    mlflow.sklearn.save_model(LogisticRegression().fit(x, y), str(tmp_path / "m"), pip_requirements=REQUIREMENTS)
    with pytest.raises(ModelLoadError, match=r"no signature.*infer_signature"):
        load_model(tmp_path)


def test_a_tensor_signature_is_refused(tmp_path: Path) -> None:
    x, y = _xy()
    array = x.to_numpy()
    model = LogisticRegression().fit(array, y)
    signature = infer_signature(array, model.predict(array))
    mlflow.sklearn.save_model(model, str(tmp_path / "m"), signature=signature, pip_requirements=REQUIREMENTS)
    with pytest.raises(ModelLoadError, match=r"tensor-based.*infer_signature"):
        load_model(tmp_path)


def test_a_missing_flavor_library_names_the_package_and_version_asked_for(tmp_path: Path) -> None:
    x, y = _xy()
    model = LogisticRegression().fit(x, y)
    path = tmp_path / "m"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(x, y), pip_requirements=REQUIREMENTS)
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    del mlmodel["flavors"]["sklearn"]
    mlmodel["flavors"]["python_function"]["loader_module"] = "fancyboost_flavor.loader"
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (path / "requirements.txt").write_text("mlflow==3.17.0\nfancyboost-flavor==2.1.0\n")
    with pytest.raises(ModelLoadError) as caught:
        load_model(tmp_path)
    message = str(caught.value)
    assert "'fancyboost_flavor'" in message and "fancyboost-flavor==2.1.0 (requirements.txt)" in message


def test_boolean_labels_keep_their_type_and_class_probabilities_are_opt_in(tmp_path: Path) -> None:
    x, y = _xy()
    model = LogisticRegression().fit(x, y)
    mlflow.sklearn.save_model(
        model, str(tmp_path / "m"), signature=infer_signature(x, y), pip_requirements=REQUIREMENTS
    )
    plain = load_model(tmp_path)
    assert isinstance(plain, SklearnClassifier)
    body = {"dataframe_records": x.head(5).to_dict("records")}
    answer = json.loads(score_sync(body, plain, Validator(plain.spec, 20), 100))["predictions"]
    assert [a["prediction"] for a in answer] == model.predict(x.head(5)).tolist()
    assert set(answer[0]) == {"prediction", "probability"}
    wide = load_model(tmp_path, class_probabilities=True)
    answer = json.loads(score_sync(body, wide, Validator(wide.spec, 20), 100))["predictions"]
    proba = model.predict_proba(x.head(5))
    assert [[a["probability_False"], a["probability_True"]] for a in answer] == proba.tolist()


def test_a_regressor_answers_prediction_only(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge

    x, _ = _xy()
    model = Ridge().fit(x, x["a"] * 2.5)
    mlflow.sklearn.save_model(model, str(tmp_path / "m"), signature=infer_signature(x), pip_requirements=REQUIREMENTS)
    loaded = load_model(tmp_path)
    assert isinstance(loaded, SklearnRegressor)
    out = score_csv_body(x.head(4).to_csv(index=False), loaded, Validator(loaded.spec, 20), 100).decode()
    lines = out.splitlines()
    assert lines[0] == "a,b,prediction"
    assert [float(line.rsplit(",", 1)[1]) for line in lines[1:]] == model.predict(x.head(4)).tolist()


class _Bands(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def predict(self, context: object, model_input: pd.DataFrame, params: object = None) -> pd.DataFrame:
        return pd.DataFrame({"double": model_input["a"] * 2, "band": np.where(model_input["a"] > 0, "hi, up", "lo")})


def test_a_pyfunc_returning_a_frame_answers_its_columns(tmp_path: Path) -> None:
    x, _ = _xy(10)
    mlflow.pyfunc.save_model(
        str(tmp_path / "m"), python_model=_Bands(), signature=infer_signature(x), pip_requirements=["mlflow"]
    )
    loaded = load_model(tmp_path)
    assert isinstance(loaded, PyfuncModel)
    answer = json.loads(score_sync({"inputs": x.to_dict("list")}, loaded, Validator(loaded.spec, 20), 100))
    assert answer["predictions"] == _Bands().predict(None, x).to_dict("records")
    out = score_csv_body(x.to_csv(index=False), loaded, Validator(loaded.spec, 20), 100).decode()
    assert pd.read_csv(pd.io.common.StringIO(out))["band"].tolist() == _Bands().predict(None, x)["band"].tolist()


def test_booleans_and_datetimes_are_read_from_text_and_json(tmp_path: Path) -> None:
    x = pd.DataFrame(
        {
            "flag": [True, False, True, False] * 10,
            "when": pd.to_datetime(
                ["2024-01-02", "2024-03-04T05:06:07", "2023-12-31 23:59:59", "2024-02-29"] * 10, format="ISO8601"
            ),
            "n": np.arange(40, dtype=np.int32),
        }
    )
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    # Day of the year: the same whatever the datetime64 resolution (MLflow gives the model nanoseconds).
    to_numbers = make_column_transformer(
        (FunctionTransformer(lambda c: c.apply(lambda s: s.dt.day_of_year)), ["when"]), remainder="passthrough"
    )
    model = make_pipeline(to_numbers, LogisticRegression()).fit(x, x["when"].dt.day_of_year > 40)
    mlflow.sklearn.save_model(
        model,
        str(tmp_path / "m"),
        signature=infer_signature(x),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        pip_requirements=REQUIREMENTS,
    )
    loaded = load_model(tmp_path)
    kinds = {c.name: c.kind for c in loaded.spec.columns}
    assert kinds == {"flag": "boolean", "when": "datetime", "n": "integer"}
    validator = Validator(loaded.spec, 20)
    expected = model.predict(x).tolist()
    out = score_csv_body(x.to_csv(index=False), loaded, validator, 100).decode().splitlines()
    assert [line.split(",")[-2] == "True" for line in out[1:]] == expected
    records = [
        {"flag": f, "when": w.isoformat(), "n": int(n)} for f, w, n in zip(x["flag"], x["when"], x["n"], strict=True)
    ]
    answer = json.loads(score_sync({"dataframe_records": records}, loaded, validator, 100))
    assert [a["prediction"] for a in answer["predictions"]] == expected
    bad = [dict(records[0], flag="yes"), dict(records[1], when="soon"), dict(records[2], n=2**31)]
    with pytest.raises(RequestRejected) as caught:
        score_sync({"dataframe_records": bad}, loaded, validator, 100)
    assert [e["message"] for e in caught.value.details["row_errors"]] == [
        "flag: 'yes' is a str, expected true or false",
        "when: 'soon' is a str, expected an ISO 8601 date/time",
        "n: 2147483648 is outside the integer range [-2147483648, 2147483647]",
    ]


def test_native_threads_are_capped_in_the_thread_that_predicts() -> None:
    import threading

    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    before = _openmp_effective_n_threads()
    seen: list[int] = []

    def predictor() -> None:
        limit_native_threads(1)
        seen.append(_openmp_effective_n_threads())

    thread = threading.Thread(target=predictor)
    thread.start()
    thread.join()
    assert seen == [1]
    assert _openmp_effective_n_threads() == before  # OpenMP's count is per thread: this one is untouched
