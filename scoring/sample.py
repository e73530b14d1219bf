"""Sample input files for the churn model (no label column), good or deliberately bad.

``python -m scoring.sample --rows N --format csv|jsonl [--gzip] --out FILE [--seed S] [--bad KIND]``

The demo, the tests and the benchmarks use these files. ``--bad KIND`` writes an input the service must
reject or partly reject with a clear error (see ``BAD_KINDS``); ``quoted-multiline`` is valid but
awkward (quoted fields with commas and newlines) and exercises the CSV slow path.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from scoring.data import generate
from scoring.schema import CATEGORICAL_COLUMNS, INPUT_COLUMNS

FORMATS = ("csv", "jsonl")
GZIP_LEVEL = 5
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
}


def frame(rows: int, seed: int) -> pd.DataFrame:
    """Input rows as a client sends them: plain strings and numbers."""
    data = generate(rows, seed, label=False)
    return data[list(INPUT_COLUMNS)].astype({name: str for name in CATEGORICAL_COLUMNS})


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


def _encode(data: pd.DataFrame, fmt: str) -> bytes:
    return to_csv(data) if fmt == "csv" else to_jsonl(data)


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
        quoted = data.assign(
            customerID=[f"{cid}, line\nnext" if i % 3 == 0 else cid for i, cid in enumerate(data["customerID"])]
        )
        return _encode(quoted, fmt)
    raise ValueError(f"unknown bad kind {kind!r}; choose from {sorted(BAD_KINDS)}")


def sample_bytes(rows: int, fmt: str, *, seed: int = 0, bad: str | None = None, compress: bool = False) -> bytes:
    """The bytes of a sample file (gzip-compressed when ``compress``)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--format", choices=FORMATS, default="csv")
    parser.add_argument("--gzip", action="store_true", help="gzip-compress the file")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad", choices=sorted(BAD_KINDS), help="write a deliberately bad file of this kind")
    args = parser.parse_args(argv)
    if args.bad in ("some-bad-rows", "ragged") and args.rows < 10:
        parser.error(f"--bad {args.bad} needs at least 10 rows")
    data = sample_bytes(args.rows, args.format, seed=args.seed, bad=args.bad, compress=args.gzip)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
