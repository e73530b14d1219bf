"""Validation of input rows against the model signature, column by column and vectorised.

Two entry points share the checks: :meth:`Validator.check_text` for CSV chunks (every field arrives as
text in an Arrow string column) and :meth:`Validator.check_values` for JSON (Python values per column).
A row is good when every column value is valid; bad rows are counted and the first few described
(``row index: reason``). The frame handed to the model holds the good rows only, with categorical
columns as Arrow-backed strings and numbers as float64 / int64 numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.service.errors import ScoringError
from scoring.service.model import Column, Kind, ModelSpec
from shared.contracts import ErrorCode

Describe = Callable[[int], str]


@dataclass
class Checked:
    frame: pd.DataFrame  # good rows only
    good: np.ndarray  # bool mask over the input rows
    errors: list[tuple[int, str]]  # (row index in this batch, reason) for the first bad rows
    error_count: int


@dataclass
class _Column:
    values: Any  # pa.Array of strings, or a float64 numpy array
    bad: np.ndarray
    describe: Describe


def _levels_text(levels: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in levels)


class Validator:
    def __init__(self, spec: ModelSpec, max_errors: int) -> None:
        self.spec = spec
        self.max_errors = max_errors

    def check_header(self, names: Sequence[str]) -> None:
        """Fail the whole input when its columns do not match the signature."""
        seen: set[str] = set()
        duplicates = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
        if duplicates:
            raise ScoringError(ErrorCode.DUPLICATE_COLUMNS, f"duplicated columns: {duplicates}")
        missing = [n for n in self.spec.required if n not in seen]
        if missing:
            raise ScoringError(
                ErrorCode.MISSING_COLUMNS, f"missing columns: {missing}; expected {list(self.spec.names)}"
            )
        unexpected = [n for n in names if n not in self.spec.names]
        if unexpected:
            raise ScoringError(
                ErrorCode.UNEXPECTED_COLUMNS, f"unexpected columns: {unexpected}; expected {list(self.spec.names)}"
            )

    # ---------------------------------------------------------------------------------------------
    def check_text(self, table: pa.Table) -> Checked:
        columns = {name: self._text_column(self.spec.column(name), table.column(name)) for name in table.column_names}
        return self._finish(columns, table.num_rows)

    def check_values(self, columns: Mapping[str, list[Any]], rows: int) -> Checked:
        checked = {name: self._value_column(self.spec.column(name), values) for name, values in columns.items()}
        return self._finish(checked, rows)

    # ---------------------------------------------------------------------------------------------
    def _text_column(self, column: Column, raw: pa.ChunkedArray | pa.Array) -> _Column:
        arr = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
        if arr.type != pa.large_string():
            arr = arr.cast(pa.large_string())
        if column.kind == Kind.STRING:
            return self._strings(column, arr, np.zeros(len(arr), dtype=bool), lambda i: repr(arr[i].as_py()))
        try:
            numbers = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            numbers = pd.to_numeric(pd.Series(arr.to_pandas()).str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        missing = np.isnan(numbers)
        not_number = missing & ~_nan_text(arr) if missing.any() else missing

        def describe(i: int) -> str:
            text = arr[i].as_py()
            if not text.strip():
                return f"{column.name} is empty"
            return f"{column.name}: {text!r} " + (
                "is not a number" if not_number[i] else self._number_problem(column, numbers[i])
            )

        return self._numbers(column, numbers, describe)

    def _value_column(self, column: Column, values: list[Any]) -> _Column:
        types = set(map(type, values))
        if column.kind == Kind.STRING:
            if types <= {str}:
                arr = pa.array(values, type=pa.large_string())
                wrong = np.zeros(len(values), dtype=bool)
            else:
                wrong = np.fromiter((type(v) is not str for v in values), dtype=bool, count=len(values))
                arr = pa.array([v if type(v) is str else "" for v in values], type=pa.large_string())

            def describe_string(i: int) -> str:
                value = values[i]
                if value is None:
                    return f"{column.name} is missing"
                if type(value) is not str:
                    return f"{column.name}: {value!r} is a {type(value).__name__}, expected a string"
                return repr(value)

            return self._strings(column, arr, wrong, describe_string)
        if types <= {int, float}:
            numbers = np.asarray(values, dtype=np.float64)
        else:
            numbers = np.fromiter(
                (float(v) if type(v) in (int, float) else np.nan for v in values), dtype=np.float64, count=len(values)
            )

        def describe(i: int) -> str:
            value = values[i]
            if value is None:
                return f"{column.name} is missing"
            if type(value) not in (int, float):
                return f"{column.name}: {value!r} is a {type(value).__name__}, expected a number"
            return f"{column.name}: {value!r} " + self._number_problem(column, numbers[i])

        return self._numbers(column, numbers, describe)

    # ---------------------------------------------------------------------------------------------
    def _strings(self, column: Column, arr: pa.Array, wrong: np.ndarray, show: Describe) -> _Column:
        if column.levels is None:
            bad = wrong.copy()
            if column.required:
                bad |= pc.equal(pc.utf8_length(arr), 0).to_numpy(zero_copy_only=False)
            return _Column(arr, bad, lambda i: show(i) if wrong[i] else f"{column.name} is empty")
        codes = pc.index_in(arr, value_set=pa.array(column.levels, type=pa.large_string()))
        bad = wrong | codes.is_null().to_numpy(zero_copy_only=False)
        levels = _levels_text(column.levels)

        def describe(i: int) -> str:
            if wrong[i]:
                return show(i)
            return f"{column.name}: {arr[i].as_py()!r} is not one of {levels}"

        return _Column(arr, bad, describe)

    @staticmethod
    def _number_problem(column: Column, value: float) -> str:
        if not np.isfinite(value):
            return "is not a finite number"
        if column.kind in Kind.WHOLE and value != np.floor(value):
            return "is not a whole number"
        return "is not valid"

    @staticmethod
    def _numbers(column: Column, numbers: np.ndarray, describe: Describe) -> _Column:
        bad = ~np.isfinite(numbers)
        if column.kind in Kind.WHOLE:
            with np.errstate(invalid="ignore"):
                bad |= numbers != np.floor(numbers)
        return _Column(numbers, bad, describe)

    def _finish(self, columns: Mapping[str, _Column], rows: int) -> Checked:
        bad = np.zeros(rows, dtype=bool)
        for col in columns.values():
            bad |= col.bad
        good = ~bad
        errors: list[tuple[int, str]] = []
        for index in np.flatnonzero(bad)[: self.max_errors]:
            reasons = [col.describe(int(index)) for col in columns.values() if col.bad[index]]
            errors.append((int(index), "; ".join(reasons)))
        all_good = not bad.any()
        mask = None if all_good else pa.array(good)
        arrays: dict[str, pa.Array] = {}
        for name, col in columns.items():
            kind = self.spec.column(name).kind
            if kind == Kind.STRING:
                arrays[name] = col.values if mask is None else col.values.filter(mask)
            else:
                values = col.values if all_good else col.values[good]
                arrays[name] = pa.array(values.astype(np.int64) if kind in Kind.WHOLE else values)
        # One Arrow table converted at once is about twice as fast as assembling pandas Series one by one.
        frame = pa.table(arrays).to_pandas() if arrays else pd.DataFrame(index=range(int(good.sum())))
        return Checked(frame, good, errors, int(bad.sum()))


def _nan_text(arr: pa.Array) -> np.ndarray:
    """True where the text spells NaN, so it is reported as 'not a finite number' rather than 'not a number'."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    return pc.is_in(lowered, value_set=pa.array(["nan", "+nan", "-nan"], type=pa.large_string())).to_numpy(
        zero_copy_only=False
    )
