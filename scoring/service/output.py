"""Predictions and how each output format writes them.

A model (``scoring.service.model``) answers a batch of good rows with :data:`Predictions`: an Arrow table
with one row per good input row and the model's output columns in order (the shapes by model kind are
listed in ``shared.contracts``). A classifier's ``prediction`` column is dictionary-encoded (class index
into the model's own labels, with their own type), so each label is rendered once per batch, not once
per row. Nothing here knows which model produced the table.

How a format plugs in
---------------------
An output format turns (the good input rows, their :data:`Predictions`) into output bytes:

* text formats that keep each input record's bytes and append the predictions use the per-row texts
  below: :func:`csv_fields` (``,v1,v2`` with CSV quoting) after :func:`csv_head` on the header line, or
  :func:`json_members` (``,"k1":v1,"k2":v2`` with JSON escaping) inserted before a JSON object's ``}``;
* a columnar format appends the columns themselves: :func:`with_predictions` (an Arrow table of the
  good input rows plus the prediction columns, ready for ``pyarrow.parquet.ParquetWriter``);
* the sync JSON answer is :func:`json_rows` (one object per row).

The async job (``scoring.service.job``) drives a format through the ``RecordFormat`` port of
``scoring.service.formats``; a new format implements that port with the helpers here and registers itself
there, and nothing else in the service changes.

Numbers are written as the shortest text that reads back to the same double (Arrow's float formatting),
so a reader gets the model's values exactly; NaN and infinities are JSON ``null`` and CSV ``nan`` /
``inf``.
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.service.errors import ScoringError
from shared.contracts import ErrorCode

Predictions: TypeAlias = pa.Table
_CSV_SPECIAL = '[,"\r\n]'
_EMPTY = pa.scalar("", pa.large_string())
_COMMA = pa.scalar(",", pa.large_string())
_QUOTE = pa.scalar('"', pa.large_string())


def csv_quote(text: str) -> str:
    """One CSV field as Python's csv module writes it (QUOTE_MINIMAL)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_head(names: list[str]) -> bytes:
    """The text appended to the input's header line: ``,name1,name2`` (quoted where needed)."""
    return "".join("," + csv_quote(name) for name in names).encode()


def csv_fields(predictions: Predictions) -> pa.Array:
    """Per row, ``,v1,v2,...`` as UTF-8 bytes (large_binary), CSV-quoted where a value needs it."""
    texts = [_texts(column, csv=True) for column in predictions.columns]
    joined = pc.binary_join_element_wise(_EMPTY, *texts, _COMMA)
    return joined.cast(pa.large_binary())


def json_members(predictions: Predictions) -> pa.Array:
    """Per row, ``,"name1":v1,"name2":v2`` as UTF-8 bytes (large_binary), JSON-escaped."""
    parts: list[Any] = []
    for name, column in zip(predictions.column_names, predictions.columns, strict=True):
        parts.append(pa.scalar("," + json.dumps(name) + ":", pa.large_string()))
        parts.append(_texts(column, csv=False))
    joined = pc.binary_join_element_wise(*parts, _EMPTY)
    return joined.cast(pa.large_binary())


def json_rows(predictions: Predictions) -> str:
    """The predictions as a JSON array of objects, one per row, keys in column order."""
    if predictions.num_rows == 0:
        return "[]"
    members: list[str] = json_members(predictions).cast(pa.large_string()).to_pylist()
    return "[" + ",".join("{" + m[1:] + "}" for m in members) + "]"


def with_predictions(rows: pa.Table, predictions: Predictions) -> pa.Table:
    """The good input rows with the prediction columns appended (a name already in the input is an error)."""
    clash = sorted(set(rows.column_names) & set(predictions.column_names))
    if clash:
        raise ScoringError(ErrorCode.UNEXPECTED_COLUMNS, f"the input already has the output columns {clash}")
    for name, column in zip(predictions.column_names, predictions.columns, strict=True):
        rows = rows.append_column(name, column)
    return rows


def same_columns(first: list[str], predictions: Predictions) -> None:
    """A model whose output columns change between batches cannot be written as one file."""
    if predictions.column_names != first:
        raise ScoringError(
            ErrorCode.INTERNAL, f"the model returned columns {predictions.column_names} after {first} for this input"
        )


# -------------------------------------------------------------------------------------------------
def _texts(column: pa.ChunkedArray | pa.Array, *, csv: bool) -> pa.Array:
    """Each value's text (large_string, no nulls) as a CSV field or a JSON value."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        dictionary = _texts(arr.dictionary, csv=csv)
        indices = arr.indices
        texts = dictionary.take(indices)
        return texts.fill_null("" if csv else "null") if texts.null_count else texts
    kind = arr.type
    if pa.types.is_floating(kind):
        values = arr.cast(pa.float64())
        texts = pc.cast(values, pa.large_string())
        finite = pc.is_finite(values)
        if not csv and not pc.all(finite).as_py():
            texts = pc.if_else(finite, texts, pa.scalar(None, pa.large_string()))
    elif pa.types.is_integer(kind):
        texts = pc.cast(arr, pa.large_string())
    elif pa.types.is_boolean(kind):
        spelled = ("True", "False") if csv else ("true", "false")
        texts = pc.if_else(arr, pa.scalar(spelled[0], pa.large_string()), pa.scalar(spelled[1], pa.large_string()))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        strings = arr.cast(pa.large_string())
        if csv:
            quoted = pc.binary_join_element_wise(_QUOTE, pc.replace_substring(strings, '"', '""'), _QUOTE, _EMPTY)
            texts = pc.if_else(pc.match_substring_regex(strings, _CSV_SPECIAL), quoted, strings)
        else:
            texts = pa.array([None if s is None else json.dumps(s) for s in strings.to_pylist()], pa.large_string())
    elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        texts = pc.cast(arr, pa.large_string())
        if not csv:
            texts = pa.array([None if s is None else json.dumps(s) for s in texts.to_pylist()], pa.large_string())
    else:  # lists, structs, binary...: their JSON text (a CSV field holding JSON)
        dumped = [None if v is None else json.dumps(_plain(v)) for v in arr.to_pylist()]
        texts = pa.array([csv_quote(t) if csv and t is not None else t for t in dumped], pa.large_string())
    texts = texts.cast(pa.large_string())
    return texts.fill_null("" if csv else "null") if texts.null_count else texts


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
