"""What the service's fast paths (``linear``, ``ordinal``) share: which parts of a fitted ColumnTransformer they
may take over, and the probe rows each proves itself on against the model when it loads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scoring.service.spec import Kind, ModelSpec

PROBE_ROWS = 64
UNKNOWN_LEVEL = "\x00unknown level\x00"  # a probe value that is none of a column's levels


def required_parts(features: Any, spec: ModelSpec) -> list[tuple[Any, list[str]]] | None:
    """The parts of a fitted ColumnTransformer that make output columns, each with the columns it reads; None
    when a part reads a column by position, one the signature lacks, or an optional one (which may be missing)."""
    parts: list[tuple[Any, list[str]]] = []
    names = set(spec.names)
    for _, transformer, columns in features.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        if isinstance(columns, list | np.ndarray) and len(columns) == 0:
            continue
        if not isinstance(columns, list | np.ndarray) or not all(isinstance(c, str) and c in names for c in columns):
            return None
        if not all(spec.column(c).required for c in columns):
            return None
        parts.append((transformer, list(columns)))
    return parts


def probe_codes(rng: np.random.Generator, levels: int, unseen: bool) -> np.ndarray:
    """Level positions of a string column's probe rows: every level (as far as the rows go), then random ones,
    with -1 (a value that is no level) among them when ``unseen``."""
    picked = rng.integers(-1 if unseen else 0, levels, PROBE_ROWS)
    picked[:levels] = np.arange(levels)[:PROBE_ROWS]
    return picked


def probe_texts(levels: Sequence[str], codes: np.ndarray) -> list[str]:
    return [levels[i] if i >= 0 else UNKNOWN_LEVEL for i in codes]


def probe_numbers(rng: np.random.Generator, kind: str, centre: float, spread: float) -> np.ndarray:
    """A numeric column's probe values (float64), whole numbers for a whole kind."""
    values = rng.normal(centre, spread, PROBE_ROWS)
    return np.round(values) if kind in Kind.WHOLE else values
