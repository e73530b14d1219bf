"""Small MLflow models saved the way a user saves theirs, for tests that must serve "any model".

Each builder trains in well under a second on small data (scikit-learn's bundled iris and diabetes
sets, or a few hundred generated rows), saves with ``mlflow.sklearn.save_model`` /
``mlflow.pyfunc.save_model`` and MLflow 3's defaults (skops serialization for scikit-learn), and
returns a :class:`UserModel`: where the model is, rows to score, and the model's own in-process
predictions to compare a served answer with. None of these models imports this repository's code.

``build(name, out_dir)`` builds one by name (see :data:`NAMES`); the session fixture ``user_model`` in
``tests/fixtures/models.py`` builds each at most once per test session.

Models (name: what it is; all but the last two have a column-based signature):

* ``iris_multiclass``: StandardScaler + LogisticRegression, string labels, 3 classes;
* ``binary_int_onehot``: ColumnTransformer(OneHotEncoder, StandardScaler) + LogisticRegression, labels
  0/1, no ``category_levels`` metadata;
* ``gbr_skops``: GradientBoostingRegressor on diabetes, skops with ``skops_trusted_types``;
* ``hgb_ordinal``: ColumnTransformer(OrdinalEncoder, passthrough) + HistGradientBoostingClassifier with
  categorical features, string labels (the shape whose feature step the service computes itself);
* ``pyfunc_frame`` / ``pyfunc_dict``: custom PythonModels (models from code) answering with a DataFrame
  (price, band, heavy) / a dict of columns (total, sign);
* ``bool_label``: LogisticRegression with boolean labels;
* ``quoted_labels``: LogisticRegression whose labels hold a comma, a quote and a newline;
* ``no_signature``: LogisticRegression saved without a signature;
* ``tensor_signature``: LogisticRegression trained on a numpy array (tensor-based signature).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import skops.io
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

IRIS_MULTICLASS = "iris_multiclass"
BINARY_INT_ONEHOT = "binary_int_onehot"
GBR_SKOPS = "gbr_skops"
HGB_ORDINAL = "hgb_ordinal"
PYFUNC_FRAME = "pyfunc_frame"
PYFUNC_DICT = "pyfunc_dict"
BOOL_LABEL = "bool_label"
QUOTED_LABELS = "quoted_labels"
NO_SIGNATURE = "no_signature"
TENSOR_SIGNATURE = "tensor_signature"

CLASSIFIER = "classifier"
REGRESSOR = "regressor"
FRAME = "frame"  # a pyfunc returning a DataFrame
COLUMNS = "columns"  # a pyfunc returning a dict of columns

QUOTED = ("plain", "with, comma", 'say "hi"', "two\nlines")
_CODE = Path(__file__).with_name("pyfunc_code")


@dataclass(frozen=True)
class UserModel:
    """A saved MLflow model plus rows to score with it.

    ``inputs`` holds rows with the signature's column types (for ``tensor_signature`` the same numbers
    as a DataFrame; ``model_input`` is what that model takes). ``kind`` says what a served answer should
    hold: a classifier's label (and class probabilities), a regressor's number, or a pyfunc's columns.
    ``valid`` is False for the models a model-agnostic service must refuse at start.
    """

    name: str
    path: Path
    kind: str
    inputs: pd.DataFrame
    valid: bool = True
    classes: tuple[Any, ...] = ()
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def pyfunc(self) -> mlflow.pyfunc.PyFuncModel:
        """The model as MLflow's generic loader gives it (loaded once per UserModel)."""
        if "pyfunc" not in self._cache:
            self._cache["pyfunc"] = mlflow.pyfunc.load_model(str(self.path))
        return self._cache["pyfunc"]

    def sklearn(self) -> Any:
        """The scikit-learn estimator (only for the scikit-learn models)."""
        if "sklearn" not in self._cache:
            self._cache["sklearn"] = mlflow.sklearn.load_model(str(self.path))
        return self._cache["sklearn"]

    def predict(self, rows: pd.DataFrame | None = None) -> Any:
        """The model's own answer for ``rows`` (default: ``inputs``), through the pyfunc flavor."""
        frame = self.inputs if rows is None else rows
        if self.name == TENSOR_SIGNATURE:
            return self.pyfunc().predict(frame.to_numpy())
        return self.pyfunc().predict(frame)

    def predict_proba(self, rows: pd.DataFrame | None = None) -> np.ndarray:
        """Class probabilities in the order of ``classes`` (classifiers only)."""
        if self.kind != CLASSIFIER:
            raise TypeError(f"{self.name} is a {self.kind}, not a classifier")
        frame = self.inputs if rows is None else rows
        proba: np.ndarray = self.sklearn().predict_proba(frame)
        return proba


def label_and_probability(estimator: Any, rows: pd.DataFrame) -> tuple[list[Any], np.ndarray]:
    """A scikit-learn classifier's own label for each row and the probability it gives that label: what the
    service answers for the row."""
    labels = estimator.predict(rows)
    proba = estimator.predict_proba(rows)
    classes = list(estimator.classes_)
    return list(labels), proba[np.arange(len(rows)), [classes.index(label) for label in labels]]


def _pins(*packages: str) -> list[str]:
    """Pinned requirements of the installed versions. Without them MLflow infers requirements by loading
    the model in a subprocess (seconds per model), and lists this test process's packages too."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in packages]


SKLEARN_REQUIREMENTS = _pins("mlflow", "scikit-learn", "skops", "numpy", "scipy", "pandas")
PYFUNC_REQUIREMENTS = _pins("mlflow", "numpy", "pandas")


def _fresh(out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        raise FileExistsError(f"{out} exists; give each model a new directory")
    return str(out)


def _numbers(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x1": rng.normal(size=rows), "x2": rng.normal(size=rows)})


def iris_multiclass(out: Path) -> UserModel:
    data = load_iris(as_frame=True)
    x = data.data
    y = np.asarray(data.target_names)[data.target]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    mlflow.sklearn.save_model(
        model, _fresh(out), signature=infer_signature(x, model.predict(x)), pip_requirements=SKLEARN_REQUIREMENTS
    )
    return UserModel(
        IRIS_MULTICLASS, out, CLASSIFIER, x.iloc[::5].reset_index(drop=True), classes=tuple(model.classes_)
    )


def _plans(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "plan": rng.choice(["basic", "plus", "pro"], n).astype(object),
            "region": rng.choice(["north", "south"], n).astype(object),
            "usage": rng.gamma(2.0, 3.0, n),
            "tickets": rng.integers(0, 6, n),
        }
    )


def binary_int_onehot(out: Path) -> UserModel:
    x = _plans(300, 3)
    y = ((x["plan"] == "basic").to_numpy() & (x["usage"].to_numpy() < 6) | (x["tickets"].to_numpy() > 3)).astype(int)
    encode = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
            ("numbers", StandardScaler(), ["usage", "tickets"]),
        ]
    )
    model = Pipeline([("encode", encode), ("classify", LogisticRegression())]).fit(x, y)
    mlflow.sklearn.save_model(
        model, _fresh(out), signature=infer_signature(x, model.predict(x)), pip_requirements=SKLEARN_REQUIREMENTS
    )
    return UserModel(BINARY_INT_ONEHOT, out, CLASSIFIER, x.iloc[:40], classes=tuple(model.classes_))


def hgb_ordinal(out: Path) -> UserModel:
    x = _plans(400, 11)
    busy = (x["usage"].to_numpy() > 6) | (x["tickets"].to_numpy() > 3)
    y = np.where((x["plan"] == "basic").to_numpy() & busy, "leave", "stay")
    encode = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
                ["plan", "region"],
            ),
            ("numbers", "passthrough", ["usage", "tickets"]),
        ]
    )
    trees = HistGradientBoostingClassifier(max_iter=30, categorical_features=[0, 1], random_state=0)
    model = Pipeline([("encode", encode), ("trees", trees)]).fit(x, y)
    mlflow.sklearn.save_model(
        model,
        _fresh(out),
        signature=infer_signature(x, model.predict(x)),
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(model)),
        pip_requirements=SKLEARN_REQUIREMENTS,
    )
    return UserModel(HGB_ORDINAL, out, CLASSIFIER, x.iloc[:40], classes=tuple(model.classes_))


def gbr_skops(out: Path) -> UserModel:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    model = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0).fit(x, y)
    # What a user does when save_model reports untrusted types: list them as trusted.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    mlflow.sklearn.save_model(
        model,
        _fresh(out),
        signature=infer_signature(x, model.predict(x)),
        skops_trusted_types=trusted,
        pip_requirements=SKLEARN_REQUIREMENTS,
    )
    return UserModel(GBR_SKOPS, out, REGRESSOR, x.iloc[:40].reset_index(drop=True))


def _from_code(name: str, code: str, kind: str, inputs: pd.DataFrame, out: Path) -> UserModel:
    """Save a models-from-code pyfunc with a signature inferred from its own answer to ``inputs``."""
    draft = out.with_name(out.name + ".draft")
    code_path = str(_CODE / code)
    mlflow.pyfunc.save_model(_fresh(draft), python_model=code_path, pip_requirements=PYFUNC_REQUIREMENTS)
    output = mlflow.pyfunc.load_model(str(draft)).predict(inputs)
    mlflow.pyfunc.save_model(
        _fresh(out),
        python_model=code_path,
        signature=infer_signature(inputs, output),
        pip_requirements=PYFUNC_REQUIREMENTS,
    )
    return UserModel(name, out, kind, inputs)


def pyfunc_frame(out: Path) -> UserModel:
    rng = np.random.default_rng(5)
    inputs = pd.DataFrame({"weight": rng.uniform(0.1, 12.0, 30).round(2), "express": rng.random(30) < 0.3})
    return _from_code(PYFUNC_FRAME, "frame_model.py", FRAME, inputs, out)


def pyfunc_dict(out: Path) -> UserModel:
    return _from_code(
        PYFUNC_DICT, "columns_model.py", COLUMNS, _numbers(30, 6).rename(columns={"x1": "a", "x2": "b"}), out
    )


def bool_label(out: Path) -> UserModel:
    x = _numbers(200, 7)
    y = (x["x1"] + 0.5 * x["x2"] > 0).to_numpy()
    model = LogisticRegression().fit(x, y)
    mlflow.sklearn.save_model(
        model, _fresh(out), signature=infer_signature(x, model.predict(x)), pip_requirements=SKLEARN_REQUIREMENTS
    )
    return UserModel(BOOL_LABEL, out, CLASSIFIER, x.iloc[:40], classes=tuple(model.classes_))


def quoted_labels(out: Path) -> UserModel:
    x = _numbers(400, 8)
    quadrant = (x["x1"].to_numpy() > 0).astype(int) * 2 + (x["x2"].to_numpy() > 0).astype(int)
    y = np.asarray(QUOTED, dtype=object)[quadrant]
    model = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.sklearn.save_model(
        model, _fresh(out), signature=infer_signature(x, model.predict(x)), pip_requirements=SKLEARN_REQUIREMENTS
    )
    return UserModel(QUOTED_LABELS, out, CLASSIFIER, x.iloc[:40], classes=tuple(model.classes_))


def no_signature(out: Path) -> UserModel:
    x = _numbers(100, 9)
    model = LogisticRegression().fit(x, (x["x1"] > 0).astype(int))
    mlflow.sklearn.save_model(model, _fresh(out), pip_requirements=SKLEARN_REQUIREMENTS)
    return UserModel(NO_SIGNATURE, out, CLASSIFIER, x.iloc[:10], valid=False, classes=tuple(model.classes_))


def tensor_signature(out: Path) -> UserModel:
    x = _numbers(100, 10)
    array = x.to_numpy()
    model = LogisticRegression().fit(array, (array[:, 0] > 0).astype(int))
    mlflow.sklearn.save_model(
        model,
        _fresh(out),
        signature=infer_signature(array, model.predict(array)),
        pip_requirements=SKLEARN_REQUIREMENTS,
    )
    return UserModel(TENSOR_SIGNATURE, out, CLASSIFIER, x.iloc[:10], valid=False, classes=tuple(model.classes_))


BUILDERS: dict[str, Callable[[Path], UserModel]] = {
    IRIS_MULTICLASS: iris_multiclass,
    BINARY_INT_ONEHOT: binary_int_onehot,
    GBR_SKOPS: gbr_skops,
    HGB_ORDINAL: hgb_ordinal,
    PYFUNC_FRAME: pyfunc_frame,
    PYFUNC_DICT: pyfunc_dict,
    BOOL_LABEL: bool_label,
    QUOTED_LABELS: quoted_labels,
    NO_SIGNATURE: no_signature,
    TENSOR_SIGNATURE: tensor_signature,
}
NAMES: tuple[str, ...] = tuple(BUILDERS)
VALID_NAMES: tuple[str, ...] = tuple(n for n in NAMES if n not in (NO_SIGNATURE, TENSOR_SIGNATURE))


def build(name: str, out: Path) -> UserModel:
    """Train and save the model called ``name`` into the new directory ``out``."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown test model {name!r}; choose from {NAMES}") from None
    return builder(out)
