"""The model port: any MLflow model with a column-based signature, found under the model directory, loaded once.

:func:`load_model` reads the MLmodel file and picks how to call the model:

* the ``sklearn`` flavor when the model has one (pickle, cloudpickle or skops: the trusted types the
  model was saved with come from its own MLmodel, as ``mlflow.sklearn.load_model`` reads them). An
  estimator with ``predict_proba`` and ``classes_`` is a classifier, anything else a regressor;
* otherwise the ``python_function`` flavor (custom ``PythonModel``s and any flavor whose libraries are
  installed), whose ``predict`` output becomes the output columns.

Every model answers :meth:`ScoringModel.predict` with :data:`scoring.service.output.Predictions` (the
shapes by model kind are tabled in ``shared.contracts``). Input is validated against the signature
alone (``scoring.service.validation``); category levels are checked only where the model's metadata
declares them (``category_levels``: column -> allowed values). A model without a signature, with a
tensor signature, or whose libraries are missing is refused at start with what to do about it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.models import Model
from mlflow.types import DataType

from scoring.service.errors import ScoringError
from scoring.service.linear import LinearScorer, compile_linear
from scoring.service.ordinal import OrdinalFeatures, compile_ordinal
from scoring.service.output import Predictions
from scoring.service.spec import Column, Kind, ModelSpec
from shared.contracts import PREDICTION_COLUMN, PROBABILITY_COLUMN, ErrorCode

if TYPE_CHECKING:
    from scoring.service.validation import Checked

logger = logging.getLogger(__name__)

MLMODEL_FILE = "MLmodel"
METADATA_CATEGORIES = "category_levels"
SKLEARN_FLAVOR = "sklearn"
PYFUNC_FLAVOR = "python_function"
FIX_SIGNATURE = (
    "save the model with a column-based signature, e.g. "
    "mlflow.sklearn.save_model(model, path, signature=mlflow.models.infer_signature(X, model.predict(X))) "
    "with X a pandas DataFrame of the input columns"
)
_SEARCH_DEPTH = 4
# Classifiers whose predict is the class of highest predict_proba (scikit-learn computes one from the
# other), so the label comes from the probabilities without a second pass over the rows.
_ARGMAX_CLASSIFIERS = (
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
)


class ModelLoadError(RuntimeError):
    """No usable MLflow model under the model directory; the message says what to change."""


class ScoringModel(Protocol):
    """What the service needs of a model: its input spec and predictions for validated rows."""

    spec: ModelSpec
    path: Path

    def predict(self, checked: Checked) -> Predictions: ...

    def describe(self) -> str: ...


def limit_native_threads(threads: int) -> None:
    """Cap the OpenMP / BLAS threads the model's native code starts from the calling thread.

    OpenMP's thread count is per calling thread, so each thread that predicts calls this once. Without a
    cap, a gradient-boosted model's predict opens a parallel region per tree over every core; next to
    the job's reader and upload threads (and on a busy machine) its threads mostly wait for each other:
    1 thread predicted 200,000 rows in 5.6 s where 2 threads took 12.4 s, and 28.8 s in 7 batches.
    ``threadpoolctl`` is declared in the scoring environment (it also comes with scikit-learn).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def find_model_dir(root: Path) -> Path:
    """The single directory holding an ``MLmodel`` file at or below ``root`` (AML nests the registered folder)."""
    if not root.is_dir():
        raise ModelLoadError(f"model directory {root} does not exist")
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        depth = len(Path(current).relative_to(root).parts)
        if MLMODEL_FILE in files:
            found.append(Path(current))
            dirs.clear()
        elif depth >= _SEARCH_DEPTH:
            dirs.clear()
    if len(found) != 1:
        raise ModelLoadError(f"expected exactly one {MLMODEL_FILE} under {root}, found {len(found)}: {found}")
    return found[0]


def spec_of(meta: Model) -> ModelSpec:
    """The input spec from the model's signature and its ``category_levels`` metadata."""
    signature = meta.signature
    if signature is None or signature.inputs is None:
        raise ModelLoadError(f"the model has no signature, so its input columns are unknown: {FIX_SIGNATURE}")
    inputs = signature.inputs
    if inputs.is_tensor_spec():
        raise ModelLoadError(
            f"the model's input signature is tensor-based; this service scores tables of named columns: {FIX_SIGNATURE}"
        )
    if not inputs.has_input_names():
        raise ModelLoadError(f"the model's input signature has no column names: {FIX_SIGNATURE}")
    levels: dict[str, Any] = (meta.metadata or {}).get(METADATA_CATEGORIES) or {}
    columns = []
    for spec in inputs.inputs:
        kind = spec.type.name if isinstance(spec.type, DataType) else str(spec.type)
        if kind not in Kind.ALL:
            raise ModelLoadError(
                f"input column {spec.name!r} has type {kind}; this service reads {sorted(Kind.ALL)} columns"
            )
        allowed = levels.get(spec.name)
        if allowed is not None and kind != Kind.STRING:
            raise ModelLoadError(f"{METADATA_CATEGORIES} names column {spec.name!r}, which is not a string column")
        columns.append(Column(str(spec.name), kind, spec.required, tuple(map(str, allowed)) if allowed else None))
    return ModelSpec(tuple(columns))


def load_model(
    root: Path, *, class_probabilities: bool = False, compiled: bool = True, predict_parts: int = 1
) -> ScoringModel:
    """Load the model under ``root`` once; ``class_probabilities`` adds ``probability_<label>`` columns;
    ``predict_parts``: row ranges a large batch is predicted in at once, where the service computes the feature
    step (``scoring.service.ordinal``)."""
    path = find_model_dir(root)
    meta = Model.load(str(path / MLMODEL_FILE))
    spec = spec_of(meta)
    flavors = meta.flavors or {}
    model: ScoringModel
    if SKLEARN_FLAVOR in flavors:
        import mlflow.sklearn

        estimator = _loaded(path, lambda: mlflow.sklearn.load_model(str(path)))
        if callable(getattr(estimator, "predict_proba", None)) and hasattr(estimator, "classes_"):
            model = SklearnClassifier(estimator, spec, path, class_probabilities, compiled, predict_parts)
        else:
            model = SklearnRegressor(estimator, spec, path, compiled, predict_parts)
    elif PYFUNC_FLAVOR in flavors:
        import mlflow.pyfunc

        model = PyfuncModel(_loaded(path, lambda: mlflow.pyfunc.load_model(str(path))), spec, path)
    else:
        raise ModelLoadError(f"the model has neither the {SKLEARN_FLAVOR} nor the {PYFUNC_FLAVOR} flavor: {flavors}")
    logger.info("loaded model from %s: %s", path, model.describe())
    return model


def _loaded(path: Path, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except Exception as exc:  # MLflow and the flavors raise many kinds; each ends as one message at start
        missing = _missing_module(exc)
        if missing is None:
            raise ModelLoadError(f"the model in {path} could not be loaded: {exc}") from exc
        raise ModelLoadError(_missing_message(path, missing)) from exc


def _missing_module(exc: BaseException | None) -> str | None:
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc.name.split(".")[0]
        exc = exc.__cause__ or exc.__context__
    return None


# Import names that differ from the package name on PyPI.
_PACKAGE_OF = {"sklearn": "scikit-learn", "cv2": "opencv-python", "PIL": "pillow", "yaml": "pyyaml"}


def _missing_message(path: Path, module: str) -> str:
    """Which package (and version) the model asked for in its requirements.txt / python_env.yaml."""
    package = _PACKAGE_OF.get(module, module)
    wanted = _normalized(package)
    asked: list[str] = []
    for name in ("requirements.txt", "python_env.yaml"):
        file = path / name
        if not file.is_file():
            continue
        for line in file.read_text(errors="replace").splitlines():
            entry = line.strip().lstrip("- ").strip()
            requirement = re.split(r"[<>=!~;\[ ]", entry, maxsplit=1)[0]
            if requirement and _normalized(requirement) == wanted:
                asked.append(f"{entry} ({name})")
            elif name == "python_env.yaml" and entry.startswith("python:"):
                asked.append(f"Python {entry.split(':', 1)[1].strip()} (python_env.yaml)")
    want = "; the model asks for " + ", ".join(asked) if asked else "; the model's requirements do not name it"
    return (
        f"the model needs the Python module {module!r} (package {package}), which is not installed in this "
        f"environment{want}. Install it in the scoring environment (the model's requirements.txt lists what it "
        "was saved with)"
    )


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _class_labels(classes: np.ndarray) -> pa.Array:
    """The classifier's labels as an Arrow array of their own type (str, int, bool...)."""
    values = classes.tolist()
    if all(type(v) is str for v in values):
        return pa.array(values, pa.string())
    return pa.array(values)


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    while steps:
        estimator = steps[-1][1]
        steps = getattr(estimator, "steps", None)
    return estimator


def _caller(estimator: Any, ordinal: OrdinalFeatures | None, checked: Checked) -> Callable[[str], Any]:
    """Calls a method of the model on the good rows: the steps after the feature step on the matrix the service
    computed (``scoring.service.ordinal``), else the whole model on the rows' DataFrame."""
    matrix = ordinal.matrix(checked) if ordinal is not None else None
    if ordinal is None or matrix is None:
        frame = checked.frame
        return lambda method: _call(method, lambda: getattr(estimator, method)(frame))
    return lambda method: _call(method, lambda: ordinal.call(method, matrix))


def _how(estimator: Any, ordinal: OrdinalFeatures | None) -> str:
    return type(estimator).__name__ + (", ordinal features computed by the service" if ordinal else "")


def _call(what: str, fn: Callable[[], Any]) -> Any:
    """A model call; its failure fails the input with the model's own message rather than the server."""
    try:
        return fn()
    except (ValueError, TypeError, KeyError) as exc:
        raise ScoringError(ErrorCode.MALFORMED_DATA, f"the model's {what} refused the rows: {exc}") from exc


class SklearnClassifier:
    """A scikit-learn classifier: the predicted label (its own type), its probability, optionally every class's."""

    def __init__(
        self,
        estimator: Any,
        spec: ModelSpec,
        path: Path,
        class_probabilities: bool = False,
        compiled: bool = True,
        predict_parts: int = 1,
    ) -> None:
        self.estimator = estimator
        self.spec = spec
        self.path = path
        self.classes = np.asarray(estimator.classes_)
        self.labels = _class_labels(self.classes)
        self.class_probabilities = class_probabilities
        final = _final_step(estimator)
        self._argmax = f"{type(final).__module__}.{type(final).__qualname__}" in _ARGMAX_CLASSIFIERS
        self.linear: LinearScorer | None = compile_linear(estimator, spec) if compiled else None
        self.ordinal = compile_ordinal(estimator, spec, predict_parts) if compiled and self.linear is None else None
        self._names = [f"{PROBABILITY_COLUMN}_{label}" for label in self.labels.to_pylist()]

    def describe(self) -> str:
        how = "compiled linear scorer" if self.linear else _how(self.estimator, self.ordinal)
        return f"classifier of {len(self.classes)} classes {self.labels.to_pylist()[:10]} ({how})"

    def predict(self, checked: Checked) -> Predictions:
        compiled = self.linear.predict(checked) if self.linear is not None else None
        if compiled is not None:
            proba, picked = compiled
        else:
            call = _caller(self.estimator, self.ordinal, checked)
            proba = np.asarray(call("predict_proba"), dtype=np.float64)
            picked = np.argmax(proba, axis=1) if self._argmax else self._predicted(call)
        columns: dict[str, Any] = {
            PREDICTION_COLUMN: pa.DictionaryArray.from_arrays(pa.array(picked.astype(np.int32)), self.labels),
            PROBABILITY_COLUMN: pa.array(proba[np.arange(len(picked)), picked]),
        }
        if self.class_probabilities:
            columns |= {name: pa.array(proba[:, i]) for i, name in enumerate(self._names)}
        return pa.table(columns)

    def _predicted(self, call: Callable[[str], Any]) -> np.ndarray:
        """Class indices of the model's own ``predict`` (for classifiers whose label is not the argmax)."""
        predicted = np.asarray(call("predict"))
        picked = np.minimum(np.searchsorted(self.classes, predicted), len(self.classes) - 1)
        if not (self.classes[picked] == predicted).all():
            raise ScoringError(ErrorCode.INTERNAL, "the model predicted a label that is not in its classes_")
        return picked


class SklearnRegressor:
    """Any scikit-learn estimator without ``predict_proba``: ``prediction`` per row (one per output if several)."""

    def __init__(
        self, estimator: Any, spec: ModelSpec, path: Path, compiled: bool = True, predict_parts: int = 1
    ) -> None:
        self.estimator = estimator
        self.spec = spec
        self.path = path
        self.ordinal = compile_ordinal(estimator, spec, predict_parts) if compiled else None

    def describe(self) -> str:
        return f"{_how(self.estimator, self.ordinal)} (predict)"

    def predict(self, checked: Checked) -> Predictions:
        return output_columns(_caller(self.estimator, self.ordinal, checked)("predict"), checked.rows)


class PyfuncModel:
    """An MLflow pyfunc model: whatever ``predict`` returns, as columns."""

    def __init__(self, model: Any, spec: ModelSpec, path: Path) -> None:
        self.model = model
        self.spec = spec
        self.path = path

    def describe(self) -> str:
        return f"pyfunc model ({self.model.metadata.flavors.get(PYFUNC_FLAVOR, {}).get('loader_module')})"

    def predict(self, checked: Checked) -> Predictions:
        frame = checked.frame
        return output_columns(_call("predict", lambda: self.model.predict(frame)), checked.rows)


def output_columns(result: Any, rows: int) -> Predictions:
    """A model's ``predict`` result as columns: a DataFrame's or dict's own columns, else ``prediction``."""
    if isinstance(result, pd.DataFrame):
        table = pa.Table.from_pandas(result, preserve_index=False)
        table = table.rename_columns([str(n) for n in table.column_names])
    elif isinstance(result, dict):
        table = pa.table({str(k): _column(v) for k, v in result.items()})
    else:
        values = np.asarray(result.to_numpy() if isinstance(result, pd.Series) else result)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim == 2:
            table = pa.table({f"{PREDICTION_COLUMN}_{i}": _column(values[:, i]) for i in range(values.shape[1])})
        else:
            table = pa.table({PREDICTION_COLUMN: _column(values)})
    if table.num_rows != rows:
        raise ScoringError(ErrorCode.INTERNAL, f"the model returned {table.num_rows} predictions for {rows} rows")
    return table


def _column(values: Any) -> pa.Array:
    if isinstance(values, pd.Series):
        return pa.Array.from_pandas(values)
    array = np.asarray(values)
    if array.dtype == object:
        return pa.array(array.tolist())
    return pa.array(array)
