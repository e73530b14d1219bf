"""Input files as clients write them: CSV, JSON Lines and Parquet bytes from a DataFrame."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = ("csv", "jsonl", "parquet")
GZIP_LEVEL = 5
PARQUET_ROW_GROUP_ROWS = 100_000


def to_csv(data: pd.DataFrame) -> bytes:
    """CSV quoted only where needed, like most tools write it (Arrow's writer is fast; pandas handles the rest)."""
    out = io.BytesIO()
    try:
        table = pa.Table.from_pandas(data, preserve_index=False)
        pacsv.write_csv(table, out, pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
        return out.getvalue()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed-type columns or values with commas, quotes or newlines.
        text: str = data.to_csv(index=False, na_rep="NaN", lineterminator="\n")
        return text.encode()


def to_jsonl(data: pd.DataFrame) -> bytes:
    text: str = data.to_json(orient="records", lines=True)
    return text.encode() if text.endswith("\n") else (text + "\n").encode()


def to_parquet(data: pd.DataFrame, row_group_rows: int = PARQUET_ROW_GROUP_ROWS) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), out, row_group_size=row_group_rows)
    return out.getvalue()


def encode(data: pd.DataFrame, fmt: str, *, row_group_rows: int = PARQUET_ROW_GROUP_ROWS) -> bytes:
    if fmt == "csv":
        return to_csv(data)
    if fmt == "jsonl":
        return to_jsonl(data)
    if fmt == "parquet":
        return to_parquet(data, row_group_rows)
    raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
