"""What the service knows of a model's input: columns, their kinds, whether required, category levels.

Kinds are MLflow's column types (``mlflow.types.DataType`` names). Each kind has the NumPy dtype MLflow's
own schema enforcement gives a column of that type (``DataType.to_numpy``), so the model sees the same
frame here as behind ``mlflow models serve``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


class Kind:
    """Column kinds the service reads (MLflow signature type names)."""

    STRING = "string"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    LONG = "long"
    FLOAT = "float"
    DOUBLE = "double"
    DATETIME = "datetime"
    NUMERIC = frozenset({LONG, INTEGER, DOUBLE, FLOAT})
    WHOLE = frozenset({LONG, INTEGER})
    ALL = frozenset({STRING, BOOLEAN, DATETIME, *NUMERIC})


# The dtype of each numeric kind in the frame a model gets (what MLflow's schema enforcement converts to).
NUMPY_TYPES: dict[str, np.dtype] = {
    Kind.INTEGER: np.dtype(np.int32),
    Kind.LONG: np.dtype(np.int64),
    Kind.FLOAT: np.dtype(np.float32),
    Kind.DOUBLE: np.dtype(np.float64),
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    required: bool
    levels: tuple[str, ...] | None = None  # allowed values of a string column, when the model's metadata says


@dataclass(frozen=True)
class ModelSpec:
    columns: tuple[Column, ...]

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @cached_property
    def _by_name(self) -> dict[str, Column]:
        return {column.name: column for column in self.columns}

    def column(self, name: str) -> Column:
        return self._by_name[name]
