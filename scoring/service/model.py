"""The deployed MLflow model: found under the model directory, loaded once, described by its signature.

The service validates input against the model's own signature (column names, types, which are
optional) and the category levels recorded in the MLmodel metadata, so a retrained model with other
columns needs no code change here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.sklearn
import numpy as np
from mlflow.models import Model

from scoring.service.linear import LinearScorer, compile_linear
from scoring.service.spec import Column, Kind, ModelSpec

if TYPE_CHECKING:
    from scoring.service.validation import Checked

logger = logging.getLogger(__name__)

MLMODEL_FILE = "MLmodel"
METADATA_CATEGORIES = "category_levels"
POSITIVE_LABEL = "Yes"
_SEARCH_DEPTH = 4


class ModelLoadError(RuntimeError):
    """No usable MLflow model under the model directory."""


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


def _spec(meta: Model) -> ModelSpec:
    signature = meta.signature
    if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
        raise ModelLoadError("the model has no input signature with column names")
    levels: dict[str, Any] = (meta.metadata or {}).get(METADATA_CATEGORIES) or {}
    columns = []
    for spec in signature.inputs.inputs:
        kind = str(spec.type.name)
        if kind not in Kind.NUMERIC and kind != Kind.STRING:
            raise ModelLoadError(f"column {spec.name!r} has type {kind}, which this service does not read")
        allowed = levels.get(spec.name)
        columns.append(Column(spec.name, kind, spec.required, tuple(allowed) if allowed else None))
    return ModelSpec(tuple(columns))


class ChurnModel:
    """The scikit-learn pipeline plus its spec: labels and churn probabilities for validated rows.

    When the pipeline is the churn pipeline (see :mod:`scoring.service.linear`), rows are scored from the
    level codes and numbers that validation produced; any other pipeline gets the validated DataFrame.
    """

    def __init__(self, pipeline: Any, spec: ModelSpec, path: Path, compiled: bool = True) -> None:
        self.pipeline = pipeline
        self.spec = spec
        self.path = path
        classes = [str(c) for c in pipeline.classes_]
        if POSITIVE_LABEL not in classes or len(classes) != 2:
            raise ModelLoadError(f"expected a binary classifier with class {POSITIVE_LABEL!r}, got {classes}")
        self._positive = classes.index(POSITIVE_LABEL)
        self.label_texts = (classes[1 - self._positive], classes[self._positive])  # (negative, positive)
        self.linear: LinearScorer | None = compile_linear(pipeline, spec, self._positive) if compiled else None

    @classmethod
    def load(cls, root: Path, compiled: bool = True) -> ChurnModel:
        path = find_model_dir(root)
        meta = Model.load(str(path / MLMODEL_FILE))
        pipeline = mlflow.sklearn.load_model(str(path))
        model = cls(pipeline, _spec(meta), path, compiled)
        logger.info("loaded model from %s (%s)", path, "compiled linear scorer" if model.linear else "pipeline")
        return model

    def score(self, checked: Checked) -> tuple[np.ndarray, np.ndarray]:
        """(True where the label is the positive class, probability of the positive class) per good row."""
        if self.linear is not None:
            decision = self.linear.decision(checked.codes, checked.numbers)
            # decision > 0 is how scikit-learn's predict picks the label.
            return decision > 0, self.linear.probability(decision)
        proba = self.pipeline.predict_proba(checked.frame)[:, self._positive]
        return proba > 0.5, proba

    def labels(self, positive: np.ndarray) -> np.ndarray:
        """Label texts (object array) for a positive-class mask."""
        return np.where(positive, self.label_texts[1], self.label_texts[0]).astype(object)
