"""Validation of input rows against the model signature, column by column and vectorised.

Three entry points share the checks: :meth:`Validator.check_text` for CSV chunks (every field arrives
as text in an Arrow string column), :meth:`Validator.check_values` for JSON (Python values per column)
and :meth:`Validator.check_typed`, the fast path for CSV chunks that Arrow's reader already parsed into
numbers (it answers only for chunks without a bad row; the caller falls back to ``check_text``).
A row is good when every column value is valid; bad rows are counted and the first few described
(``row index: reason``). For the good rows, :class:`Checked` holds each categorical column's level codes
(positions in the signature's levels, computed once here and reused by the model) and each numeric
column as float64; its ``frame`` (categorical columns as Arrow-backed strings, numbers as float64 /
int64) is built only when a model needs a DataFrame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.service.errors import ScoringError
from scoring.service.spec import Column, Kind, ModelSpec
from shared.contracts import ErrorCode

Describe = Callable[[int], str]
_PARALLEL_ROWS = 2000
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _lookup_pool() -> ThreadPoolExecutor:
    """One helper thread per process for level lookups (its tasks never wait on other tasks)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="level-lookup")
        return _pool


@dataclass
class Checked:
    good: np.ndarray  # bool mask over the input rows
    errors: list[tuple[int, str]]  # (row index in this batch, reason) for the first bad rows
    error_count: int
    codes: dict[str, np.ndarray]  # good rows: position in the column's levels, per categorical column
    numbers: dict[str, np.ndarray]  # good rows: float64 per numeric column
    columns: dict[str, pa.Array | pa.ChunkedArray]  # good rows, as the frame gets them

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The good rows as a DataFrame (built on first use: only a model without a compiled scorer needs it)."""
        if not self.columns:
            return pd.DataFrame(index=range(int(self.good.sum())))
        # One Arrow table converted at once is about twice as fast as assembling pandas Series one by one.
        return pa.table(self.columns).to_pandas()


@dataclass
class _Column:
    values: Any  # pa.Array of strings, or a float64 numpy array
    bad: np.ndarray
    describe: Describe
    codes: np.ndarray | None = None  # level positions (-1: not a level) of a categorical column


def _levels_text(levels: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in levels)


class Validator:
    def __init__(self, spec: ModelSpec, max_errors: int) -> None:
        self.spec = spec
        self.max_errors = max_errors
        self._levels = {
            c.name: pa.array(c.levels, type=pa.large_string()) for c in spec.columns if c.levels is not None
        }
        self._small_levels = {name: levels.cast(pa.string()) for name, levels in self._levels.items()}

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

    def check_values(self, columns: Mapping[str, Sequence[Any]], rows: int) -> Checked:
        checked = {name: self._value_column(self.spec.column(name), values) for name, values in columns.items()}
        return self._finish(checked, rows)

    def check_typed(self, table: pa.Table) -> Checked | None:
        """Check a table read with :meth:`typed_columns`; None when any row is bad (use ``check_text`` then)."""
        codes = self._typed_codes(table)
        if codes is None:
            return None
        numbers: dict[str, np.ndarray] = {}
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        for name in table.column_names:
            column = self.spec.column(name)
            values = table.column(name)
            if column.kind == Kind.STRING:
                if column.levels is None and column.required and pc.min(pc.utf8_length(values)).as_py() == 0:
                    return None
                columns[name] = values
                continue
            numbers[name] = numeric = values.to_numpy()
            if not np.isfinite(numeric).all():
                return None
            if column.kind in Kind.WHOLE:
                if (numeric != np.floor(numeric)).any():
                    return None
                columns[name] = pa.array(numeric.astype(np.int64))
            else:
                columns[name] = values
        return Checked(np.ones(table.num_rows, dtype=bool), [], 0, codes, numbers, columns)

    def _typed_codes(self, table: pa.Table) -> dict[str, np.ndarray] | None:
        """Level codes of each categorical column of a typed table; None when a value is not a level.

        The lookups (most of the checking time) are split between this thread and a helper thread for
        large tables: Arrow releases the GIL, and a sync request has the machine's cores to itself.
        """
        names = [n for n in table.column_names if n in self._small_levels]

        def lookup(part: list[str]) -> list[pa.ChunkedArray]:
            return [pc.index_in(table.column(n), value_set=self._small_levels[n]) for n in part]

        if table.num_rows >= _PARALLEL_ROWS and len(names) > 1:
            helper = _lookup_pool().submit(lookup, names[1::2])
            found = dict(zip(names[::2], lookup(names[::2]), strict=True))
            found |= zip(names[1::2], helper.result(), strict=True)
        else:
            found = dict(zip(names, lookup(names), strict=True))
        if any(f.null_count for f in found.values()):
            return None
        return {n: f.to_numpy() for n, f in found.items()}

    def typed_columns(self, names: Sequence[str]) -> dict[str, pa.DataType]:
        """Arrow CSV column types for :meth:`check_typed`: strings stay text, numbers are read as float64."""
        return {n: pa.string() if self.spec.column(n).kind == Kind.STRING else pa.float64() for n in names}

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

    def _value_column(self, column: Column, values: Sequence[Any]) -> _Column:
        if column.kind == Kind.STRING:
            arr = _all_text(values)
            if arr is not None:
                return self._strings(column, arr, np.zeros(len(values), dtype=bool), lambda i: repr(values[i]))
        types = set(map(type, values))
        if column.kind == Kind.STRING:
            if types <= {str}:
                texts = values
                wrong = np.zeros(len(values), dtype=bool)
            else:
                texts = [v if type(v) is str else "" for v in values]
                wrong = np.fromiter((type(v) is not str for v in values), dtype=bool, count=len(values))
            try:
                arr = pa.array(texts, type=pa.large_string())
            except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON) is not text
                unicode = np.fromiter(map(_is_unicode, texts), dtype=bool, count=len(texts))
                wrong |= ~unicode
                arr = pa.array([t if ok else "" for t, ok in zip(texts, unicode, strict=True)], type=pa.large_string())

            def describe_string(i: int) -> str:
                value = values[i]
                if value is None:
                    return f"{column.name} is missing"
                if type(value) is not str:
                    return f"{column.name}: {value!r} is a {type(value).__name__}, expected a string"
                if not _is_unicode(value):
                    return f"{column.name}: {value!r} is not valid Unicode text"
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
        found = pc.index_in(arr, value_set=self._levels[column.name])
        codes = found.fill_null(-1).to_numpy() if found.null_count else found.to_numpy()
        bad = wrong | (codes < 0)
        levels = _levels_text(column.levels)

        def describe(i: int) -> str:
            if wrong[i]:
                return show(i)
            return f"{column.name}: {arr[i].as_py()!r} is not one of {levels}"

        return _Column(arr, bad, describe, codes)

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
        codes: dict[str, np.ndarray] = {}
        numbers: dict[str, np.ndarray] = {}
        arrays: dict[str, pa.Array | pa.ChunkedArray] = {}
        for name, col in columns.items():
            kind = self.spec.column(name).kind
            if kind == Kind.STRING:
                arrays[name] = col.values if mask is None else col.values.filter(mask)
                if col.codes is not None:
                    codes[name] = col.codes if all_good else col.codes[good]
            else:
                numbers[name] = values = col.values if all_good else col.values[good]
                arrays[name] = pa.array(values.astype(np.int64) if kind in Kind.WHOLE else values)
        return Checked(good, errors, int(bad.sum()), codes, numbers, arrays)


def _nan_text(arr: pa.Array) -> np.ndarray:
    """True where the text spells NaN, so it is reported as 'not a finite number' rather than 'not a number'."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    return pc.is_in(lowered, value_set=pa.array(["nan", "+nan", "-nan"], type=pa.large_string())).to_numpy(
        zero_copy_only=False
    )


def _all_text(values: Sequence[Any]) -> pa.Array | None:
    """The values as an Arrow string array when every one is a string (JSON values are never bytes), else None.

    Arrow refuses numbers, booleans, lists and lone surrogates itself and turns None into a null, so the
    usual all-strings column needs no Python-level type check of each value.
    """
    try:
        arr = pa.array(values, type=pa.large_string())
    except (pa.ArrowException, TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return None
    return arr if arr.null_count == 0 else None


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
