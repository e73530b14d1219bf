"""What the service knows of a model's input: columns, their kinds, whether required, category levels."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


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
