"""A compiled form of the standard scikit-learn linear classifier, used only where proven equal at load.

The shape compiled is the ordinary one for tabular data::

    Pipeline([
        ("features", ColumnTransformer([
            ("categories", OneHotEncoder(handle_unknown="ignore"), [string columns...]),
            ("numbers", StandardScaler(), [numeric columns...]),
        ])),                                   # remainder="drop"; one or more of each; in any order
        ("model", LogisticRegression()),       # binary or multinomial, any label type
    ])

A logistic regression over one-hot blocks and standardised numbers is a sum: the intercept, one weight
per string column picked by the value's level, and ``coef * (x - mean) / scale`` per number. With the
weights laid out per column, the decision value of a batch is a few gathers and multiply-adds over integer
level codes, without building the one-hot matrix (most of ``predict_proba``'s time). Where the model's
metadata declares a column's levels and they are the encoder's categories, validation already computed
the codes; otherwise one vectorised lookup per column does.

:func:`compile_linear` returns ``None`` for any other estimator (the model's own ``predict_proba`` is then
called), and for one whose compiled form does not reproduce ``predict_proba`` and ``predict`` on probe rows
(every category, an unseen one, spread-out numbers), so nothing here relies on a class name alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit, softmax

from scoring.service.fastpath import PROBE_ROWS, probe_codes, probe_numbers, probe_texts, required_parts
from scoring.service.spec import NUMPY_TYPES, Kind, ModelSpec

if TYPE_CHECKING:
    from scoring.service.validation import Checked

logger = logging.getLogger(__name__)

_PROBE_TOLERANCE = 1e-12
_EXACT_NUMBERS = frozenset({Kind.LONG, Kind.INTEGER, Kind.DOUBLE})  # float32 input is scaled in float32


@dataclass(frozen=True)
class _Categorical:
    name: str
    levels: tuple[str, ...]  # the encoder's categories, in its order
    weights: np.ndarray  # per level (then per class if several), then zeros at [-1] for a value not a level
    reuse_codes: bool  # validation's codes index these same levels


@dataclass(frozen=True)
class LinearScorer:
    """Class probabilities and the label of a logistic regression over one-hot + standardised columns.

    A binary model has one decision value per row (floats below); a multinomial one has one per class
    (arrays of the class count), turned into probabilities by softmax, as scikit-learn does.
    """

    intercept: Any  # float, or one per class
    categorical: tuple[_Categorical, ...]
    numeric: tuple[tuple[str, float, float, Any], ...]  # (column, mean, scale, coefficient or one per class)
    unknown_is_error: bool  # the encoder raises on an unseen level: leave such batches to the model

    @property
    def binary(self) -> bool:
        return np.ndim(self.intercept) == 0

    def decision(self, codes: dict[str, np.ndarray], numbers: dict[str, np.ndarray], rows: int) -> np.ndarray:
        shape = rows if self.binary else (rows, len(self.intercept))
        total = np.empty(shape, dtype=np.float64)
        total[...] = self.intercept
        for column in self.categorical:
            total += column.weights[codes[column.name]]
        for name, mean, scale, coef in self.numeric:
            scaled = (numbers[name] - mean) / scale
            total += scaled * coef if self.binary else np.outer(scaled, coef)
        return total

    def codes(self, checked: Checked) -> dict[str, np.ndarray] | None:
        """Level codes per string column (-1: unseen), or None when an unseen level must reach the model."""
        found: dict[str, np.ndarray] = {}
        for column in self.categorical:
            if column.reuse_codes and column.name in checked.codes:
                found[column.name] = checked.codes[column.name]
                continue
            values = checked.columns[column.name]
            index = pc.index_in(values, value_set=pa.array(column.levels, type=values.type))
            found[column.name] = np.asarray(index.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        if self.unknown_is_error and any((c < 0).any() for c in found.values()):
            return None
        return found

    def predict(self, checked: Checked) -> tuple[np.ndarray, np.ndarray] | None:
        """(predict_proba's columns, index of the predicted class) per good row; None: ask the model."""
        codes = self.codes(checked)
        if codes is None:
            return None
        decision = self.decision(codes, checked.numbers, checked.rows)
        if not self.binary:
            return np.asarray(softmax(decision, axis=1), dtype=np.float64), np.argmax(decision, axis=1)
        positive = np.asarray(expit(decision), dtype=np.float64)
        # decision > 0 is how scikit-learn's predict picks classes_[1].
        return np.column_stack([1.0 - positive, positive]), (decision > 0).astype(np.int64)


def compile_linear(estimator: Any, spec: ModelSpec) -> LinearScorer | None:
    """The compiled scorer of ``estimator``, or None when it is not the shape above or not proven equal."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        return None
    features, model = estimator.steps[0][1], estimator.steps[1][1]
    if type(features) is not ColumnTransformer or type(model) is not LogisticRegression:
        return None
    coef = np.asarray(model.coef_, dtype=np.float64)
    classes = len(model.classes_)
    if coef.ndim != 2 or coef.shape[0] != (1 if classes == 2 else classes):
        return None
    parts = _parts(features, spec)
    if parts is None:
        return None
    blocks, unknown_is_error = parts
    width = sum(len(levels) if kind == "categorical" else 1 for kind, _, levels, _ in blocks)
    if coef.shape[1] != width:
        return None
    weights = coef[0] if coef.shape[0] == 1 else coef.T  # per feature (then per class)
    categorical: list[_Categorical] = []
    numeric: list[tuple[str, float, float, Any]] = []
    offset = 0
    for kind, name, levels, scaling in blocks:
        if kind == "categorical":
            block = weights[offset : offset + len(levels)]
            block = np.concatenate([block, np.zeros((1, *block.shape[1:]))])
            categorical.append(_Categorical(name, levels, block, spec.column(name).levels == levels))
            offset += len(levels)
        else:
            mean, scale = scaling
            weight = weights[offset]
            numeric.append((name, mean, scale, float(weight) if np.ndim(weight) == 0 else weight))
            offset += 1
    if len({c.name for c in categorical}) != len(categorical) or len({n[0] for n in numeric}) != len(numeric):
        return None
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    scorer = LinearScorer(
        float(intercept[0]) if coef.shape[0] == 1 else intercept, tuple(categorical), tuple(numeric), unknown_is_error
    )
    if not _reproduces(scorer, estimator, spec):
        logger.warning("the compiled scorer does not reproduce the model's predictions; using the model")
        return None
    return scorer


Block = tuple[str, str, tuple[str, ...], tuple[float, float]]


def _parts(features: Any, spec: ModelSpec) -> tuple[list[Block], bool] | None:
    """Per output block of the ColumnTransformer: (kind, column, levels, (mean, scale)); None if not compilable."""
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = required_parts(features, spec)
    if parts is None:
        return None
    blocks: list[Block] = []
    unknown_is_error = False
    for transformer, columns in parts:
        if type(transformer) is OneHotEncoder:
            if transformer.drop_idx_ is not None or getattr(transformer, "_infrequent_enabled", False):
                return None
            if transformer.handle_unknown not in ("ignore", "error", "infrequent_if_exist"):
                return None
            unknown_is_error |= transformer.handle_unknown == "error"
            for name, levels in zip(columns, transformer.categories_, strict=True):
                if spec.column(name).kind != Kind.STRING or not all(isinstance(v, str) for v in levels):
                    return None
                blocks.append(("categorical", name, tuple(levels), (0.0, 1.0)))
        elif type(transformer) is StandardScaler:
            count = len(columns)
            mean = np.zeros(count) if transformer.mean_ is None else np.asarray(transformer.mean_, dtype=np.float64)
            scale = np.ones(count) if transformer.scale_ is None else np.asarray(transformer.scale_, dtype=np.float64)
            for i, name in enumerate(columns):
                if spec.column(name).kind not in _EXACT_NUMBERS:
                    return None
                blocks.append(("numeric", name, (), (float(mean[i]), float(scale[i]))))
        else:
            return None
    return (blocks, unknown_is_error) if blocks else None


def _reproduces(scorer: LinearScorer, estimator: Any, spec: ModelSpec) -> bool:
    """Compare with ``predict_proba`` and ``predict`` on probe rows: every level, an unseen one, spread numbers."""
    from scoring.service.validation import Checked

    rng = np.random.default_rng(0)
    rows = PROBE_ROWS
    codes: dict[str, np.ndarray] = {}
    columns: dict[str, Any] = {}
    for column in scorer.categorical:
        codes[column.name] = probe_codes(rng, len(column.levels), unseen=not scorer.unknown_is_error)
        columns[column.name] = probe_texts(column.levels, codes[column.name])
    numbers: dict[str, np.ndarray] = {}
    for name, mean, scale, _ in scorer.numeric:
        kind = spec.column(name).kind
        numbers[name] = probe_numbers(rng, kind, mean, 2 * scale)
        columns[name] = numbers[name].astype(NUMPY_TYPES[kind])
    frame = pd.DataFrame({n: columns[n] for n in spec.names if n in columns})
    try:
        expected = np.asarray(estimator.predict_proba(frame), dtype=np.float64)
        labels = np.asarray(estimator.predict(frame))
    except (ValueError, TypeError, KeyError) as exc:
        logger.info("the compiled scorer could not be checked against the model (%s)", exc)
        return False
    arrays = {n: pa.array(v, type=pa.large_string()) for n, v in columns.items() if n in codes}
    checked = Checked(np.ones(rows, dtype=bool), [], 0, {}, numbers, arrays)
    got = scorer.predict(checked)
    if got is None:
        return False
    proba, picked = got
    return bool(
        np.max(np.abs(proba - expected)) <= _PROBE_TOLERANCE
        and (np.asarray(estimator.classes_)[picked] == labels).all()
    )
