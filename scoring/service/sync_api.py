"""Synchronous scoring: rows in the request body, the model's output columns per row in the answer.

Accepted bodies (one of these keys; ``"mode": "sync"`` may be added), what ``mlflow models serve`` accepts
plus this project's own:

* ``{"dataframe_records": [{column: value, ...}, ...]}`` and ``{"data": [...]}`` (the same rows);
* ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` (``index`` ignored) and
  ``{"input_data": {...}}`` (Azure ML's MLflow format, the same shape);
* ``{"instances": [...]}`` and ``{"inputs": ...}`` (TF-serving style): a list of row objects, or an object
  of column -> list of values.

Answer: ``{"predictions": [{"prediction": ..., "probability": ...}, ...]}``, one object per row in input
order, with the columns the model gives (see the table in ``shared.contracts``); the same rows give the
same answer in every shape.

* ``{"csv": "<header line>\\n<row>\\n..."}``: CSV text, answered with ``{"csv": ..., "rows": n}``: the
  same text with the output columns appended to every line (what an async CSV file gets).
* A ``text/csv`` body (not JSON; Content-Type ``text/csv``): the CSV itself, answered with the same CSV
  text as ``text/csv``. The fastest shape for large batches: no JSON around the text in either
  direction, Arrow's CSV reader, and the input lines kept as they are. JSON rows cost a Python object
  per value to decode, check and convert, several times the model's own predict time.

Any bad row rejects the request with 400 (a sync caller expects one answer per row), listing the first
bad rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import msgspec

from scoring.service.csv_format import CsvScorer, split_header
from scoring.service.errors import RequestRejected, ScoringError
from scoring.service.model import ScoringModel
from scoring.service.output import json_rows
from scoring.service.validation import Validator

DATA_KEY = "data"
RECORDS_KEY = "dataframe_records"
SPLIT_KEY = "dataframe_split"
INPUT_DATA_KEY = "input_data"
INSTANCES_KEY = "instances"
INPUTS_KEY = "inputs"
RECORD_KEYS = (DATA_KEY, RECORDS_KEY)
SPLIT_KEYS = (SPLIT_KEY, INPUT_DATA_KEY)
TENSOR_KEYS = (INSTANCES_KEY, INPUTS_KEY)  # rows, or columns, depending on the value's shape
CSV_KEY = "csv"
ACCEPTED_KEYS = (*RECORD_KEYS, *SPLIT_KEYS, *TENSOR_KEYS, CSV_KEY)
_ENCODER = msgspec.json.Encoder()  # several times faster than json.dumps on a long CSV string


def _bad(message: str, **extra: Any) -> RequestRejected:
    return RequestRejected(400, message, details=extra)


def _columns_from_records(records: Any, key: str, validator: Validator) -> tuple[dict[str, Sequence[Any]], int]:
    if not isinstance(records, list) or not records:
        raise _bad(f"{key!r} must be a non-empty list of row objects")
    if not all(type(r) is dict for r in records):
        raise _bad(f"every entry of {key!r} must be a JSON object (one row: column -> value)")
    names = list(records[0])
    validator.check_header(names)
    # Same size plus every name of row 1 present means the same keys (a lookup fails otherwise).
    odd = [i + 1 for i, r in enumerate(records) if len(r) != len(names)]
    if odd:
        raise _bad(f"rows {odd[:10]} do not have the same columns as row 1 ({names})")
    # itemgetter + zip transpose the rows in C, several times faster than one list per column.
    try:
        values = (
            list(zip(*map(itemgetter(*names), records), strict=True))
            if len(names) > 1
            else [tuple(r[names[0]] for r in records)]
        )
    except KeyError:  # as many keys as row 1, but not the same ones
        wanted = set(names)
        odd = [i + 1 for i, r in enumerate(records) if r.keys() != wanted]
        raise _bad(f"rows {odd[:10]} do not have the same columns as row 1 ({names})") from None
    return dict(zip(names, values, strict=True)), len(records)


def _columns_from_split(split: Any, key: str, validator: Validator) -> tuple[dict[str, Sequence[Any]], int]:
    if (
        not isinstance(split, Mapping)
        or not isinstance(split.get("columns"), list)
        or not isinstance(split.get("data"), list)
    ):
        raise _bad(f"{key!r} must be an object with 'columns' (list of names) and 'data' (list of rows)")
    names, rows = split["columns"], split["data"]
    if not all(isinstance(n, str) for n in names):
        raise _bad(f"{key}.columns must hold column names (strings)")
    if not rows:
        raise _bad(f"{key}.data holds no rows")
    validator.check_header(names)
    odd = [i + 1 for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != len(names)]
    if odd:
        raise _bad(f"{key}.data rows {odd[:10]} are not lists of {len(names)} values")
    return dict(zip(names, zip(*rows, strict=True), strict=True)), len(rows)


def _columns_from_columns(columns: Any, key: str, validator: Validator) -> tuple[dict[str, Sequence[Any]], int]:
    if not columns or not all(isinstance(v, list) for v in columns.values()):
        raise _bad(f"{key!r} as an object must map each column name to a list of values")
    names = list(columns)
    validator.check_header(names)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise _bad(f"the columns of {key!r} do not all have the same number of values ({sorted(lengths)})")
    rows = lengths.pop()
    if not rows:
        raise _bad(f"{key!r} holds no rows")
    return {n: columns[n] for n in names}, rows


def _columns_of(key: str, value: Any, validator: Validator) -> tuple[dict[str, Sequence[Any]], int]:
    if key in RECORD_KEYS:
        return _columns_from_records(value, key, validator)
    if key in SPLIT_KEYS:
        return _columns_from_split(value, key, validator)
    if isinstance(value, Mapping):
        return _columns_from_columns(value, key, validator)
    return _columns_from_records(value, key, validator)


def score_sync(body: Mapping[str, Any], model: ScoringModel, validator: Validator, max_rows: int) -> str | bytes:
    """The JSON answer for a sync request body (already parsed), or RequestRejected."""
    present = [k for k in ACCEPTED_KEYS if k in body]
    if len(present) != 1:
        raise _bad(f"a sync request needs exactly one of the keys {list(ACCEPTED_KEYS)}; found {present or 'none'}")
    key = present[0]
    if key == CSV_KEY:
        return _score_csv_text(body[key], model, validator, max_rows)
    try:
        columns, rows = _columns_of(key, body[key], validator)
    except ScoringError as exc:
        raise _bad(exc.message, code=exc.code.value) from exc
    if rows > max_rows:
        raise RequestRejected(413, f"{rows} rows in one request; the limit is {max_rows} (use async mode for files)")
    checked = validator.check_values(columns, rows)
    if checked.error_count:
        row_errors = [{"row": i + 1, "message": m} for i, m in checked.errors]
        raise _bad(f"{checked.error_count} of {rows} rows are invalid", row_errors=row_errors)
    try:
        predictions = model.predict(checked)
    except ScoringError as exc:
        raise _bad(exc.message, code=exc.code.value) from exc
    return f'{{"predictions":{json_rows(predictions)}}}'


def score_csv_body(data: bytes | str, model: ScoringModel, validator: Validator, max_rows: int) -> bytes:
    """The CSV answer for a ``text/csv`` body: every input line with the output columns appended."""
    if isinstance(data, str):
        data = data.encode()
    if not data or data.isspace():  # bytes.strip() would copy the body
        raise _bad("a text/csv body must hold a header line and one line per row")
    return _score_csv(data, "the CSV body", model, validator, max_rows)[0]


def _score_csv_text(text: Any, model: ScoringModel, validator: Validator, max_rows: int) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise _bad(f"{CSV_KEY!r} must be CSV text: a header line and one line per row")
    output, rows = _score_csv(text.encode(), repr(CSV_KEY), model, validator, max_rows)
    return _ENCODER.encode({CSV_KEY: output.decode(), "rows": rows})


def _score_csv(data: bytes, what: str, model: ScoringModel, validator: Validator, max_rows: int) -> tuple[bytes, int]:
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        header, _, rows_text = split_header(data)
        scorer = CsvScorer(header, validator, model)
        # Early refusal of big bodies. A row of the expected width takes a byte per field (comma or line break),
        # so a shorter body cannot hold too many good rows: it skips the count (the exact check below applies).
        if (
            len(rows_text) > max_rows * len(header.names)
            and rows_text.count(b"\n") > max_rows
            and b'"' not in rows_text
        ):
            raise RequestRejected(413, f"more than {max_rows} rows in one request; use async mode for files")
        result = scorer.score(rows_text, 1)
    except ScoringError as exc:
        raise _bad(exc.message, code=exc.code.value) from exc
    if result.rows == 0:
        raise _bad(f"{what} holds a header but no rows")
    if result.rows > max_rows:
        raise RequestRejected(413, f"{result.rows} rows in one request; the limit is {max_rows}")
    if result.failed:
        row_errors = [{"row": e.row, "message": e.message} for e in result.errors]
        raise _bad(f"{result.failed} of {result.rows} rows are invalid", row_errors=row_errors)
    return result.data + header.line_ending, result.rows
