"""A compiled form of the churn pipeline (``ChurnFeatures`` then a binary ``LogisticRegression``).

A logistic regression over one-hot blocks and standardised numbers is a sum: the intercept, one weight
per categorical column picked by the value's level, and ``coef * (x - mean) / scale`` per number. With
the weights laid out per column, the decision value of a batch is a few gathers and multiply-adds over
integer level codes, without building the one-hot matrix (most of ``predict_proba``'s time). The level
codes are the ones validation already computed against the model signature's levels, so each string
column is mapped once per request.

:func:`compile_linear` returns ``None`` for any other pipeline (the service then calls
``predict_proba``), and for a pipeline whose compiled form does not reproduce ``predict_proba`` on probe
rows built from the levels, so a differently behaving transformer of the same name is never trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from scoring.service.spec import Kind, ModelSpec

logger = logging.getLogger(__name__)

FEATURES_CLASS = "ChurnFeatures"
_PROBE_ROWS = 64
_PROBE_TOLERANCE = 1e-12
_UNKNOWN_LEVEL = "\x00unknown level\x00"


@dataclass(frozen=True)
class LinearScorer:
    """Decision values from level codes (per the signature's levels) and float64 numbers, per column."""

    intercept: float
    weights: Mapping[str, np.ndarray]  # per categorical column: weight per signature level, then 0.0 at [-1]
    numeric: tuple[tuple[str, float, float, float], ...]  # (column, mean, scale, coefficient)

    def decision(self, codes: Mapping[str, np.ndarray], numbers: Mapping[str, np.ndarray]) -> np.ndarray:
        """The logistic regression's decision function; a code of -1 (unknown level) adds nothing."""
        rows = len(next(iter(codes.values()))) if codes else len(next(iter(numbers.values())))
        total = np.full(rows, self.intercept, dtype=np.float64)
        for name, weights in self.weights.items():
            total += weights[codes[name]]
        for name, mean, scale, coef in self.numeric:
            total += (numbers[name] - mean) / scale * coef
        return total

    @staticmethod
    def probability(decision: np.ndarray) -> np.ndarray:
        return np.asarray(expit(decision), dtype=np.float64)


def compile_linear(pipeline: Any, spec: ModelSpec, positive: int) -> LinearScorer | None:
    """The compiled scorer of ``pipeline`` for P(classes_[positive]), or None when it does not qualify."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    features, model = pipeline.steps[0][1], pipeline.steps[1][1]
    if type(features).__name__ != FEATURES_CLASS or not isinstance(model, LogisticRegression):
        return None
    try:
        categories: dict[str, list[str]] = dict(features.categories_)
        numeric = list(features.numeric_)
        mean = np.asarray(features.mean_, dtype=np.float64)
        scale = np.asarray(features.scale_, dtype=np.float64)
    except AttributeError:
        return None
    coef = np.asarray(model.coef_, dtype=np.float64)
    width = sum(len(levels) for levels in categories.values()) + len(numeric)
    if coef.shape != (1, width) or len(model.classes_) != 2 or mean.shape != (len(numeric),):
        return None
    if not _columns_fit(spec, categories, numeric):
        return None
    sign = 1.0 if positive == 1 else -1.0  # decision_function is for classes_[1]
    coef = coef[0] * sign
    weights: dict[str, np.ndarray] = {}
    offset = 0
    for name, levels in categories.items():
        by_level = dict(zip(levels, coef[offset : offset + len(levels)], strict=True))
        signature_levels = spec.column(name).levels or ()
        # Levels the pipeline does not know get an all-zero one-hot block, so a weight of 0.
        weights[name] = np.asarray([by_level.get(level, 0.0) for level in signature_levels] + [0.0])
        offset += len(levels)
    numbers = tuple(
        (name, float(m), float(s), float(c)) for name, m, s, c in zip(numeric, mean, scale, coef[offset:], strict=True)
    )
    scorer = LinearScorer(float(model.intercept_[0]) * sign, weights, numbers)
    if not _reproduces(scorer, pipeline, spec, positive):
        logger.warning("the compiled scorer does not reproduce predict_proba; using the pipeline")
        return None
    return scorer


def _columns_fit(spec: ModelSpec, categories: Mapping[str, list[str]], numeric: list[str]) -> bool:
    """Every model column is a required signature column of the right kind (categoricals with levels)."""
    names = set(spec.names)
    for name in categories:
        if name not in names:
            return False
        column = spec.column(name)
        if column.kind != Kind.STRING or column.levels is None or not column.required:
            return False
    for name in numeric:
        if name not in names:
            return False
        column = spec.column(name)
        if column.kind not in Kind.NUMERIC or not column.required:
            return False
    return True


def _reproduces(scorer: LinearScorer, pipeline: Pipeline, spec: ModelSpec, positive: int) -> bool:
    """Compare with ``predict_proba`` on probe rows: every level, an unknown level, spread-out numbers."""
    rng = np.random.default_rng(0)
    codes: dict[str, np.ndarray] = {}
    columns: dict[str, Any] = {}
    for name in scorer.weights:
        levels = list(spec.column(name).levels or ())
        picked = rng.integers(-1, len(levels), _PROBE_ROWS)
        codes[name] = picked
        columns[name] = [levels[i] if i >= 0 else _UNKNOWN_LEVEL for i in picked]
    numbers = {name: mean + scale * rng.normal(0, 2, _PROBE_ROWS) for name, mean, scale, _ in scorer.numeric}
    frame = pd.DataFrame({**columns, **numbers})
    expected = pipeline.predict_proba(frame)[:, positive]
    got = scorer.probability(scorer.decision(codes, numbers))
    return bool(np.max(np.abs(got - expected)) <= _PROBE_TOLERANCE)
