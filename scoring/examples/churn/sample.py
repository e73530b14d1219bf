"""Sample input files for the churn example (no label column), good or deliberately bad.

``python -m scoring.sample --kind churn --rows N --format csv|jsonl|parquet [--gzip] --out FILE [--seed S]
[--bad KIND]`` calls :func:`sample_bytes`.

The demo, the tests and the benchmarks use these files. ``--bad KIND`` writes an input the service must
reject or partly reject with a clear error (see ``BAD_KINDS``; ``PARQUET_BAD_KINDS`` are those that exist
for Parquet); ``quoted-multiline`` is valid but awkward (quoted fields with commas and newlines) and
exercises the CSV slow path.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.examples.churn.data import generate
from scoring.examples.churn.schema import CATEGORICAL_COLUMNS, INPUT_COLUMNS
from scoring.examples.files import FORMATS, GZIP_LEVEL, PARQUET_ROW_GROUP_ROWS, encode, to_csv, to_jsonl

BOMB_BYTES = 256 * 1024 * 1024

BAD_KINDS: dict[str, str] = {
    "empty": "a zero-byte file",
    "header-only": "a CSV header without data rows (JSONL: blank lines only)",
    "missing-column": "the Contract column is left out",
    "extra-column": "an extra column 'Extra' is added",
    "duplicate-column": "the tenure column appears twice",
    "wrong-types": "every tenure value is the text 'many'",
    "nan": "every MonthlyCharges value is NaN",
    "inf": "every TotalCharges value is infinite",
    "some-bad-rows": "rows 2, 5 and 9 are bad (text tenure, NaN charges, unknown contract); the rest are good",
    "ragged": "rows 3 and 4 have the wrong number of fields; the rest are good",
    "undecodable": "bytes that are not UTF-8 in the middle of the file",
    "not-tabular": "binary bytes that are neither CSV nor JSON Lines",
    "gzip-bomb": f"a valid header and one row repeated to {BOMB_BYTES // 2**20} MiB, gzip-compressed to about 1 MiB",
    "quoted-multiline": "valid: customer IDs hold quoted commas and newlines",
    "truncated": "Parquet only: the file cut in the middle, so its footer is missing",
}
# What a bad kind means in Parquet, where types are per column and there are no lines or text encoding.
PARQUET_BAD_KINDS: dict[str, str] = {
    "empty": "a zero-byte file",
    "header-only": "a schema without rows",
    "missing-column": BAD_KINDS["missing-column"],
    "extra-column": BAD_KINDS["extra-column"],
    "duplicate-column": BAD_KINDS["duplicate-column"],
    "wrong-types": "the tenure column holds the text 'many'",
    "nan": BAD_KINDS["nan"],
    "inf": BAD_KINDS["inf"],
    "some-bad-rows": "rows 2, 5 and 9 are bad (missing tenure, missing charges, unknown contract); the rest are good",
    "not-tabular": "binary bytes that are not Parquet",
    "quoted-multiline": "valid: customer IDs hold commas and newlines",
    "truncated": BAD_KINDS["truncated"],
}


def frame(rows: int, seed: int) -> pd.DataFrame:
    """Input rows as a client sends them: plain strings and numbers."""
    data = generate(rows, seed, label=False)
    return data[list(INPUT_COLUMNS)].astype({name: str for name in CATEGORICAL_COLUMNS})


def _encode(data: pd.DataFrame, fmt: str) -> bytes:
    return encode(data, fmt)


def _quoted_ids(data: pd.DataFrame) -> pd.DataFrame:
    return data.assign(
        customerID=[f"{cid}, line\nnext" if i % 3 == 0 else cid for i, cid in enumerate(data["customerID"])]
    )


def _bad_parquet(kind: str, data: pd.DataFrame, row_group_rows: int) -> bytes:
    if kind not in PARQUET_BAD_KINDS:
        raise ValueError(f"bad kind {kind!r} does not exist for Parquet; choose from {sorted(PARQUET_BAD_KINDS)}")
    if kind in ("empty", "not-tabular"):
        return _bad(kind, data, "parquet")
    changed = {
        "header-only": lambda: data.head(0),
        "missing-column": lambda: data.drop(columns=["Contract"]),
        "extra-column": lambda: data.assign(Extra=1),
        "wrong-types": lambda: data.assign(tenure="many"),
        "inf": lambda: data.assign(TotalCharges=np.inf),
        "quoted-multiline": lambda: _quoted_ids(data),
    }
    if kind in changed:
        return encode(changed[kind](), "parquet", row_group_rows=row_group_rows)
    table = pa.Table.from_pandas(data, preserve_index=False)
    if kind in ("duplicate-column", "nan"):
        if kind == "nan":  # from_pandas would store NaN as null; a NaN is what a numpy writer leaves
            index = table.schema.get_field_index("MonthlyCharges")
            table = table.set_column(index, "MonthlyCharges", pa.array(np.full(len(data), np.nan), from_pandas=False))
        else:
            table = table.append_column("tenure", table.column("tenure"))
        out = pa.BufferOutputStream()
        pq.write_table(table, out, row_group_size=row_group_rows)
        return bytes(out.getvalue())
    if kind == "some-bad-rows":
        bad = data.astype({"tenure": "Int64"})
        bad.loc[1, "tenure"] = pd.NA
        bad.loc[4, "MonthlyCharges"] = np.nan
        bad.loc[8, "Contract"] = "Weekly"
        return encode(bad, "parquet", row_group_rows=row_group_rows)
    good = encode(data, "parquet", row_group_rows=row_group_rows)  # truncated
    return good[: len(good) // 2]


def _bad(kind: str, data: pd.DataFrame, fmt: str) -> bytes:
    if kind == "empty":
        return b""
    if kind == "header-only":
        return (",".join(data.columns) + "\n").encode() if fmt == "csv" else b"\n\n"
    if kind == "missing-column":
        return _encode(data.drop(columns=["Contract"]), fmt)
    if kind == "extra-column":
        return _encode(data.assign(Extra=1), fmt)
    if kind == "duplicate-column":
        if fmt == "csv":
            good = to_csv(data)
            header, rest = good.split(b"\n", 1)
            lines = rest.splitlines()
            tenure = list(data.columns).index("tenure")
            doubled = [ln + b"," + ln.split(b",")[tenure] for ln in lines]
            return header + b",tenure\n" + b"\n".join(doubled) + b"\n"
        rows = [json.dumps(r)[:-1] + f', "tenure": {r["tenure"]}}}' for r in data.to_dict(orient="records")]
        return ("\n".join(rows) + "\n").encode()
    if kind == "wrong-types":
        return _encode(data.astype({"tenure": object}).assign(tenure="many"), fmt)
    if kind == "nan":
        if fmt == "csv":
            return to_csv(data.assign(MonthlyCharges="NaN"))
        return to_jsonl(data.assign(MonthlyCharges=np.nan)).replace(b"null", b"NaN")
    if kind == "inf":
        text = _encode(data.assign(TotalCharges=1.5e308), fmt)
        return text.replace(b"1.5e+308", b"inf" if fmt == "csv" else b"Infinity").replace(b"1.5e308", b"Infinity")
    if kind == "some-bad-rows":
        bad = data.astype({"tenure": object})
        bad.loc[1, "tenure"] = "x"
        bad.loc[4, "MonthlyCharges"] = np.nan
        bad.loc[8, "Contract"] = "Weekly"
        return _encode(bad, fmt).replace(b"null", b"NaN")
    if kind == "ragged":
        lines = _encode(data, fmt).split(b"\n")
        offset = 1 if fmt == "csv" else 0
        lines[offset + 2] = lines[offset + 2].rsplit(b",", 3)[0]
        lines[offset + 3] = lines[offset + 3] + (b",1,2" if fmt == "csv" else b"]")
        return b"\n".join(lines)
    if kind == "undecodable":
        good = _encode(data, fmt)
        middle = len(good) // 2
        return good[:middle] + b"\xff\xfe\xc3" + good[middle:]
    if kind == "not-tabular":
        return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
    if kind == "quoted-multiline":
        return _encode(_quoted_ids(data), fmt)
    raise ValueError(f"unknown bad kind {kind!r}; choose from {sorted(BAD_KINDS)}")


def sample_bytes(
    rows: int,
    fmt: str,
    *,
    seed: int = 0,
    bad: str | None = None,
    compress: bool = False,
    row_group_rows: int = PARQUET_ROW_GROUP_ROWS,
) -> bytes:
    """The bytes of a sample file (gzip-compressed when ``compress``; Parquet compresses inside instead)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    if fmt == "parquet":
        if compress:
            raise ValueError("Parquet files are compressed inside; gzip applies to CSV and JSON Lines")
        data = frame(rows, seed)
        return (
            encode(data, fmt, row_group_rows=row_group_rows) if bad is None else _bad_parquet(bad, data, row_group_rows)
        )
    if bad == "truncated":
        raise ValueError("bad kind 'truncated' exists for Parquet only")
    if bad == "gzip-bomb":
        header, row = _encode(frame(1, seed), fmt).split(b"\n")[-3:-1] if fmt == "csv" else (b"", None)
        if row is None:
            header, row = b"", to_jsonl(frame(1, seed)).rstrip(b"\n")
        row += b"\n"
        body = (header + b"\n" if header else b"") + row * (BOMB_BYTES // len(row))
        return gzip.compress(body, compresslevel=9)
    if bad is not None and bad not in BAD_KINDS:
        raise ValueError(f"unknown bad kind {bad!r}; choose from {sorted(BAD_KINDS)}")
    data = frame(rows, seed)
    raw = _encode(data, fmt) if bad is None else _bad(bad, data, fmt)
    return gzip.compress(raw, compresslevel=GZIP_LEVEL) if compress else raw
