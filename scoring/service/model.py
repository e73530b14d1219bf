"""The deployed MLflow model: found under the model directory, loaded once, described by its signature.

The service validates input against the model's own signature (column names, types, which are
optional) and the category levels recorded in the MLmodel metadata, so a retrained model with other
columns needs no code change here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import Model

logger = logging.getLogger(__name__)

MLMODEL_FILE = "MLmodel"
METADATA_CATEGORIES = "category_levels"
POSITIVE_LABEL = "Yes"
_SEARCH_DEPTH = 4


class ModelLoadError(RuntimeError):
    """No usable MLflow model under the model directory."""


class Kind:
    """Column kinds the service understands (MLflow signature type names)."""

    STRING = "string"
    LONG = "long"
    INTEGER = "integer"
    DOUBLE = "double"
    FLOAT = "float"
    NUMERIC = frozenset({LONG, INTEGER, DOUBLE, FLOAT})
    WHOLE = frozenset({LONG, INTEGER})


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    required: bool
    levels: tuple[str, ...] | None = None  # allowed values of a categorical string column


@dataclass(frozen=True)
class ModelSpec:
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


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
    """The scikit-learn pipeline plus its spec; ``predict`` gives labels and churn probabilities."""

    def __init__(self, pipeline: Any, spec: ModelSpec, path: Path) -> None:
        self.pipeline = pipeline
        self.spec = spec
        self.path = path
        classes = [str(c) for c in pipeline.classes_]
        if POSITIVE_LABEL not in classes or len(classes) != 2:
            raise ModelLoadError(f"expected a binary classifier with class {POSITIVE_LABEL!r}, got {classes}")
        self._positive = classes.index(POSITIVE_LABEL)
        self._labels = np.asarray(classes, dtype=object)

    @classmethod
    def load(cls, root: Path) -> ChurnModel:
        path = find_model_dir(root)
        meta = Model.load(str(path / MLMODEL_FILE))
        pipeline = mlflow.sklearn.load_model(str(path))
        logger.info("loaded model from %s", path)
        return cls(pipeline, _spec(meta), path)

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        proba = self.pipeline.predict_proba(frame)[:, self._positive]
        labels = np.where(proba > 0.5, self._labels[self._positive], self._labels[1 - self._positive])
        return labels, proba
