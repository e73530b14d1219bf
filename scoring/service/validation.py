"""Validation of input rows against the model signature, column by column and vectorised: the one path.

Every input format validates here and nowhere else: the columns of a file or body against the signature
(:meth:`Validator.check_header`, :meth:`Validator.check_keys` for one JSON object), then the values:
:meth:`Validator.check_text` for CSV fields (every field arrives as text in an Arrow string column),
:meth:`Validator.check_values` for JSON (Python values per column), :meth:`Validator.check_arrow` for typed
Arrow columns (Parquet), and :meth:`Validator.check_typed`, the fast path for CSV chunks that Arrow's
reader already parsed into numbers (it answers only for chunks without a bad row; the caller falls back
to ``check_text``). Kinds are MLflow's: string, boolean, integer/long, float/double, datetime (ISO 8601
text); a string column's values are checked against levels only where the model's metadata declares
them. A required column must have a value; an optional string column may be empty or null.

A row is good when every column value is valid; bad rows are counted and the first few described
(``row index: reason``). For the good rows, :class:`Checked` holds each column as Arrow (in the types
MLflow's schema enforcement gives the model: int32 for integer, float32 for float...), each numeric
column as float64 and each level-checked column's level codes (reused by a compiled model); its
``frame`` (columns in signature order) is built only when a model needs a DataFrame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.service.errors import ScoringError
from scoring.service.spec import NUMPY_TYPES, Column, Kind, ModelSpec
from shared.contracts import ErrorCode

Describe = Callable[[int], str]
_PARALLEL_ROWS = 2000
_INT32 = np.iinfo(np.int32)
_TRUE_FALSE = pa.array(["false", "true"], type=pa.large_string())
_ARROW_TYPES: dict[str, pa.DataType] = {
    Kind.INTEGER: pa.int32(),
    Kind.LONG: pa.int64(),
    Kind.FLOAT: pa.float32(),
    Kind.DOUBLE: pa.float64(),
}
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
    columns: dict[str, pa.Array | pa.ChunkedArray]  # good rows in signature order, as the frame gets them

    @cached_property
    def rows(self) -> int:
        """The number of good rows."""
        return int(self.good.sum())

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The good rows as a DataFrame (built on first use: only a model without a compiled scorer needs it)."""
        if not self.columns:
            return pd.DataFrame(index=range(self.rows))
        # One Arrow table converted at once is about twice as fast as assembling pandas Series one by one.
        return pa.table(self.columns).to_pandas()


@dataclass
class _Column:
    values: Any  # pa.Array of strings, float64 numbers, bools or datetime64[ns] (numpy)
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

    def check_keys(self, keys: Collection[str]) -> str | None:
        """Why one row's keys (a JSON object's) do not fit the signature, or None when they do."""
        names = self.spec.names
        missing = [n for n in self.spec.required if n not in keys]
        unexpected = sorted(k for k in keys if k not in names)
        parts = ([f"missing keys {missing}"] if missing else []) + (
            [f"unexpected keys {unexpected}"] if unexpected else []
        )
        return "; ".join(parts) or None

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
        columns: dict[str, _Column] = {}
        no_bad = np.zeros(table.num_rows, dtype=bool)
        for name in table.column_names:
            column = self.spec.column(name)
            values = table.column(name)
            if column.kind == Kind.STRING:
                if column.levels is None and column.required and pc.min(pc.utf8_length(values)).as_py() == 0:
                    return None
                columns[name] = _Column(values, no_bad, str, codes.get(name))
            elif column.kind in Kind.NUMERIC:
                checked = self._numbers(column, values.to_numpy(), str)
                if checked.bad.any():
                    return None
                columns[name] = checked
            else:
                checked = self._text_column(column, values)
                if checked.bad.any():
                    return None
                columns[name] = checked
        return self._finish(columns, table.num_rows)

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
        """Arrow CSV column types for :meth:`check_typed`: numbers are read as float64, everything else as text."""
        return {n: pa.float64() if self.spec.column(n).kind in Kind.NUMERIC else pa.string() for n in names}

    def check_arrow(self, table: pa.Table) -> Checked:
        """Check typed Arrow columns (a Parquet row group): text is parsed as in CSV, other values as in JSON."""
        columns: dict[str, _Column] = {}
        for name in table.column_names:
            column = self.spec.column(name)
            raw = table.column(name)
            arr = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
            kind = arr.type
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                columns[name] = self._text_column(column, arr)
            elif column.kind in Kind.NUMERIC and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                numbers = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
                columns[name] = self._numbers(column, numbers, self._describe_number(column, arr))
            elif column.kind == Kind.BOOLEAN and pa.types.is_boolean(kind) and not arr.null_count:
                columns[name] = _Column(arr.to_numpy(zero_copy_only=False), np.zeros(len(arr), dtype=bool), str)
            elif column.kind == Kind.DATETIME and pa.types.is_timestamp(kind) and kind.tz is None:
                stamps = arr.cast(pa.timestamp("ns")).to_numpy(zero_copy_only=False)
                columns[name] = self._datetimes(column, stamps, _always(f"{name} is missing"))
            else:
                columns[name] = self._value_column(column, arr.to_pylist())
        return self._finish(columns, table.num_rows)

    def _describe_number(self, column: Column, arr: pa.Array) -> Describe:
        def describe(i: int) -> str:
            value = arr[i].as_py()
            if value is None:
                return f"{column.name} is missing"
            return f"{column.name}: {value!r} " + self._number_problem(column, float(value))

        return describe

    # ---------------------------------------------------------------------------------------------
    def _text_column(self, column: Column, raw: pa.ChunkedArray | pa.Array) -> _Column:
        arr = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
        if arr.type != pa.large_string():
            arr = arr.cast(pa.large_string())
        if arr.null_count:
            arr = arr.fill_null("")
        if column.kind == Kind.STRING:
            return self._strings(column, arr, np.zeros(len(arr), dtype=bool), lambda i: repr(arr[i].as_py()))
        if column.kind == Kind.BOOLEAN:
            return self._text_booleans(column, arr)
        if column.kind == Kind.DATETIME:
            stamps = _parse_datetimes(arr)
            return self._datetimes(column, stamps, lambda i: _text_problem(column, arr[i].as_py(), "a date/time"))
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
        if column.kind == Kind.BOOLEAN:
            flags = np.fromiter((v is True for v in values), dtype=bool, count=len(values))
            wrong = np.fromiter((type(v) is not bool for v in values), dtype=bool, count=len(values))
            return _Column(flags, wrong, lambda i: _value_problem(column, values[i], "true or false"))
        if column.kind == Kind.DATETIME:
            stamps = _parse_datetimes(pa.array([v if type(v) is str else "" for v in values], type=pa.large_string()))
            return self._datetimes(column, stamps, lambda i: _value_problem(column, values[i], "an ISO 8601 date/time"))
        types = set(map(type, values))
        if column.kind == Kind.STRING:
            # An optional column may be left out of a row (null); a required one may not.
            allowed = (str,) if column.required else (str, type(None))
            texts: Sequence[Any]
            if types <= {str}:
                texts = values
                wrong = np.zeros(len(values), dtype=bool)
            else:
                texts = [v if type(v) is str else "" for v in values]
                wrong = np.fromiter((type(v) not in allowed for v in values), dtype=bool, count=len(values))
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
        if column.kind == Kind.INTEGER:
            return f"is outside the {column.kind} range [{_INT32.min}, {_INT32.max}]"
        return "is not valid"

    @staticmethod
    def _numbers(column: Column, numbers: np.ndarray, describe: Describe) -> _Column:
        bad = ~np.isfinite(numbers)
        if column.kind in Kind.WHOLE:
            with np.errstate(invalid="ignore"):
                bad |= numbers != np.floor(numbers)
        if column.kind == Kind.INTEGER:
            with np.errstate(invalid="ignore"):
                bad |= (numbers < _INT32.min) | (numbers > _INT32.max)
        return _Column(numbers, bad, describe)

    def _text_booleans(self, column: Column, arr: pa.Array) -> _Column:
        found = pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(arr)), value_set=_TRUE_FALSE)
        codes = found.fill_null(-1).to_numpy(zero_copy_only=False)
        return _Column(codes == 1, codes < 0, lambda i: _text_problem(column, arr[i].as_py(), "true or false"))

    @staticmethod
    def _datetimes(column: Column, stamps: np.ndarray, describe: Describe) -> _Column:
        return _Column(stamps, np.isnat(stamps), describe)

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
        for name in self.spec.names:
            if name not in columns:
                continue
            col = columns[name]
            kind = self.spec.column(name).kind
            if kind == Kind.STRING:
                arrays[name] = col.values if mask is None else col.values.filter(mask)
                if col.codes is not None:
                    codes[name] = col.codes if all_good else col.codes[good]
                continue
            values = col.values if all_good else col.values[good]
            if kind in Kind.NUMERIC:
                numbers[name] = values
                arrays[name] = pa.array(values.astype(NUMPY_TYPES[kind]), type=_ARROW_TYPES[kind])
            else:  # booleans and datetime64[ns]
                arrays[name] = pa.array(values)
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


def _parse_datetimes(arr: pa.Array) -> np.ndarray:
    """ISO 8601 texts as datetime64[ns]; NaT where a text is not one (Arrow's cast first, pandas per value then)."""
    try:
        return np.asarray(pc.cast(arr, pa.timestamp("ns")).to_numpy(zero_copy_only=False), dtype="datetime64[ns]")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        texts = pd.Series(arr.to_pylist(), dtype=object)
        parsed = pd.to_datetime(texts, errors="coerce", format="ISO8601")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert(None)
        return parsed.to_numpy(dtype="datetime64[ns]")


def _text_problem(column: Column, text: str, expected: str) -> str:
    if not text.strip():
        return f"{column.name} is empty"
    return f"{column.name}: {text!r} is not {expected}"


def _value_problem(column: Column, value: Any, expected: str) -> str:
    if value is None:
        return f"{column.name} is missing"
    return f"{column.name}: {value!r} is a {type(value).__name__}, expected {expected}"


def _always(text: str) -> Describe:
    return lambda _: text
