"""The feature step of an ordinal-encoded pipeline, computed from validated columns; used only where proven equal.

Gradient-boosted trees on tabular data are usually served in this shape (scikit-learn's own examples for
``HistGradientBoosting*`` with categorical features)::

    Pipeline([
        ("features", ColumnTransformer([
            ("categories", OrdinalEncoder(...), [string columns...]),
            ("numbers", "passthrough", [numeric columns...]),
        ])),                                   # remainder="drop"; one or more of each; in any order
        ("model", HistGradientBoostingClassifier(categorical_features=[...])),   # any steps after it
    ])

``OrdinalEncoder.transform`` maps strings to codes with a Python dictionary look-up per value, on a pandas
column first turned into an object array: on 100,000 rows of 15 string columns it took about 200 ms, as long
as the trees' own prediction. The same codes come from one Arrow ``index_in`` per column (about 20 ms), so
:class:`OrdinalFeatures` builds the ColumnTransformer's float64 matrix straight from the validated columns and
hands it to the steps after it; the pandas frame is not built at all.

The trees then predict a large batch in ``parts`` row ranges at once, each on its own thread with one native
thread. Trees left to OpenMP open a parallel region per tree, whose threads wait for each other at its end: on
2 cores beside two busy processes, a regressor's trees predicted 1,000,000 rows in 6.1 to 12.7 s with 2 OpenMP
threads and in 3.9 to 4.0 s in two parts; on the quiet machine, 3.8 s on one thread, 2.1 s with 2 OpenMP threads,
1.9 to 2.0 s in two parts.

:func:`compile_ordinal` returns ``None`` for any other estimator (the model is then called on the frame as
it is), and for one whose matrix is not exactly the ColumnTransformer's own on probe rows (every category, an
unseen one, spread-out numbers) or whose steps after it do not then predict exactly what the whole model
predicts, in one batch and in parts, so nothing here relies on a class name alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.service.fastpath import PROBE_ROWS, probe_codes, probe_numbers, probe_texts, required_parts
from scoring.service.spec import NUMPY_TYPES, Kind, ModelSpec

if TYPE_CHECKING:
    from scoring.service.validation import Checked

logger = logging.getLogger(__name__)

_PART_ROWS = 5_000  # fewer rows per part cost more in handing over than they save
_NUMBERS = frozenset({Kind.LONG, Kind.INTEGER, Kind.DOUBLE})  # exact as float64, as the ColumnTransformer makes them


@dataclass(frozen=True)
class _Encoded:
    name: str
    levels: pa.Array  # the encoder's categories, in its order
    unknown: float | None  # the code of a value that is not a level; None: the encoder raises on it


@dataclass(frozen=True)
class _Passed:
    name: str


@dataclass(frozen=True)
class OrdinalFeatures:
    """The ColumnTransformer's output matrix, column by column, and the steps that take it."""

    blocks: tuple[_Encoded | _Passed, ...]
    rest: Any  # the estimator after the ColumnTransformer (the last step, or a Pipeline of the steps after it)
    parts: int = 1
    pool: ThreadPoolExecutor | None = None  # ``parts`` threads, one native thread each

    def call(self, method: str, matrix: np.ndarray) -> np.ndarray:
        """``rest.<method>(matrix)``; a batch of at least ``parts`` times 5,000 rows in ``parts`` row ranges at once."""
        fn: Callable[[np.ndarray], Any] = getattr(self.rest, method)
        if self.pool is None or len(matrix) < self.parts * _PART_ROWS:
            return np.asarray(fn(matrix))
        return np.concatenate([np.asarray(r) for r in self.pool.map(fn, np.array_split(matrix, self.parts))])

    def matrix(self, checked: Checked) -> np.ndarray | None:
        """The feature matrix of the good rows; None when the rows must go to the model itself (a missing
        value, or an unseen level the encoder would refuse with its own message)."""
        out = np.empty((checked.rows, len(self.blocks)), dtype=np.float64)
        for j, block in enumerate(self.blocks):
            values = checked.columns[block.name]
            if values.null_count:
                return None
            if isinstance(block, _Passed):
                out[:, j] = values.to_numpy(zero_copy_only=False)
                continue
            index = pc.index_in(values, value_set=block.levels.cast(values.type))
            if index.null_count:
                if block.unknown is None:
                    return None
                index = index.fill_null(-1)
            codes = np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.float64)
            if block.unknown is not None:
                codes[codes < 0] = block.unknown
            out[:, j] = codes
        return out


def compile_ordinal(estimator: Any, spec: ModelSpec, parts: int = 1) -> OrdinalFeatures | None:
    """The fast feature step of ``estimator``, predicting large batches in ``parts`` row ranges at once; None when
    the estimator is not the shape above or not proven equal."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
        return None
    features = estimator.steps[0][1]
    if type(features) is not ColumnTransformer:
        return None
    if (getattr(features, "_sklearn_output_config", None) or {}).get("transform") not in (None, "default"):
        return None  # set_output(transform="pandas"): the steps after it take a frame with names
    blocks = _blocks(features, spec)
    if blocks is None:
        return None
    rest = estimator.steps[1][1] if len(estimator.steps) == 2 else estimator[1:]
    compiled = OrdinalFeatures(blocks, rest)
    if not _reproduces(compiled, estimator, features, spec):
        logger.warning("the fast feature step does not reproduce the model's own; using the model")
        return None
    if parts < 2:
        return compiled
    pool = ThreadPoolExecutor(parts, thread_name_prefix="predict-part", initializer=_one_native_thread)
    return OrdinalFeatures(blocks, rest, parts, pool)


def _one_native_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")  # BLAS limits are global to the process: left as they are


def _blocks(features: Any, spec: ModelSpec) -> tuple[_Encoded | _Passed, ...] | None:
    """The matrix's columns, in the ColumnTransformer's output order; None if any part is not of the shape."""
    from sklearn.preprocessing import OrdinalEncoder

    parts = required_parts(features, spec)
    if parts is None:
        return None
    blocks: list[_Encoded | _Passed] = []
    for transformer, columns in parts:
        if _passes_through(transformer):
            if not all(spec.column(c).kind in _NUMBERS for c in columns):
                return None
            blocks.extend(_Passed(c) for c in columns)
        elif type(transformer) is OrdinalEncoder:
            encoded = _encoded(transformer, columns, spec)
            if encoded is None:
                return None
            blocks.extend(encoded)
        else:
            return None
    if not any(isinstance(b, _Encoded) for b in blocks):
        return None  # nothing to gain over the ColumnTransformer
    return tuple(blocks)


def _passes_through(transformer: Any) -> bool:
    """``"passthrough"``, which a fitted ColumnTransformer holds as a FunctionTransformer without a function."""
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(transformer, str):
        return transformer == "passthrough"
    return type(transformer) is FunctionTransformer and transformer.func is None and transformer.inverse_func is None


def _encoded(encoder: Any, columns: Any, spec: ModelSpec) -> list[_Encoded] | None:
    if np.dtype(encoder.dtype) != np.float64 or getattr(encoder, "_infrequent_enabled", False):
        return None
    if encoder.handle_unknown == "use_encoded_value":
        unknown: float | None = float(encoder.unknown_value)
    elif encoder.handle_unknown == "error":
        unknown = None
    else:
        return None
    found: list[_Encoded] = []
    for name, levels in zip(columns, encoder.categories_, strict=True):
        if spec.column(name).kind != Kind.STRING or not all(isinstance(v, str) for v in levels):
            return None  # numeric categories, or a missing value among them
        found.append(_Encoded(name, pa.array(list(levels), type=pa.large_string()), unknown))
    return found


def _reproduces(compiled: OrdinalFeatures, estimator: Any, features: Any, spec: ModelSpec) -> bool:
    """The matrix equals the ColumnTransformer's on probe rows, and the steps after it predict what the model does."""
    from scoring.service.validation import Checked

    rng = np.random.default_rng(0)
    arrays: dict[str, pa.Array] = {}
    for block in compiled.blocks:
        if isinstance(block, _Encoded):
            levels = block.levels.to_pylist()
            codes = probe_codes(rng, len(levels), unseen=block.unknown is not None)
            arrays[block.name] = pa.array(probe_texts(levels, codes), type=pa.large_string())
        else:
            kind = spec.column(block.name).kind
            arrays[block.name] = pa.array(probe_numbers(rng, kind, 0.0, 100.0).astype(NUMPY_TYPES[kind]))
    # in the signature's order, as validation hands the columns over; the frame is the one the model would get
    checked = Checked(np.ones(PROBE_ROWS, dtype=bool), [], 0, {}, {}, {n: arrays[n] for n in spec.names if n in arrays})
    method = "predict_proba" if hasattr(estimator, "predict_proba") else "predict"
    try:
        expected_matrix = features.transform(checked.frame)
        expected = np.asarray(getattr(estimator, method)(checked.frame))
        matrix = compiled.matrix(checked)
        if matrix is None:
            return False
        got = compiled.call(method, matrix)
        in_parts = np.concatenate([compiled.call(method, part) for part in np.array_split(matrix, 2)])
    except Exception as exc:  # noqa: BLE001 - any failure only means the model keeps its own feature step
        logger.info("the fast feature step could not be checked against the model (%s)", exc)
        return False
    return (
        isinstance(expected_matrix, np.ndarray)
        and expected_matrix.dtype == np.float64
        and np.array_equal(expected_matrix, matrix, equal_nan=True)
        and np.array_equal(expected, got, equal_nan=True)
        and np.array_equal(expected, in_parts, equal_nan=True)
    )
