"""A generated corpus of awkward and hostile input files, each with the outcome the pipeline owes it.

Every case ends as exactly one of: a scored output (possibly with some rows reported as bad) or one
error record with a stable error code. ``Expect.code`` is the code the error record must carry; ``None``
means the file must be scored. ``min_rows_failed`` is how many rows must at least be reported bad.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from scoring.examples.churn.data import generate
from shared.blobnames import MAX_INPUT_NAME_LENGTH as MAX_INPUT_NAME
from shared.contracts import ErrorCode

GOOD_ROWS = 40


@dataclass(frozen=True)
class Expect:
    code: ErrorCode | None = None  # None: an output must be written
    min_rows_failed: int = 0
    # Some inputs are legitimately handled either way (scored with row errors, or refused whole);
    # ``also_ok`` lists the error codes that are also acceptable for them.
    also_ok: tuple[ErrorCode, ...] = ()

    @property
    def scored(self) -> bool:
        return self.code is None


@dataclass(frozen=True)
class Case:
    name: str  # blob name in the input container
    data: bytes
    expect: Expect


def _frame(rows: int = GOOD_ROWS, seed: int = 7) -> pd.DataFrame:
    return generate(rows, seed=seed, label=False)


def _csv(frame: pd.DataFrame, **kwargs: object) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode()  # type: ignore[call-overload, no-any-return]


def _jsonl(frame: pd.DataFrame) -> bytes:
    return frame.to_json(orient="records", lines=True).encode()


def _with_cells(frame: pd.DataFrame, column: str, values: dict[int, object]) -> pd.DataFrame:
    out = frame.astype({column: object})
    for row, value in values.items():
        out.loc[row, column] = value
    return out


def _xlsx_like() -> bytes:
    """A minimal Office Open XML container: a zip whose first entry is [Content_Types].xml."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def _zip(inner: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.csv", inner)
    return buffer.getvalue()


def _gzip_bomb(good_csv: bytes, expanded_bytes: int) -> bytes:
    """Valid CSV (the header, then one good row over and over) that inflates to ``expanded_bytes``: only the
    limit on decompressed size can stop it, not a parse error."""
    header, row = good_csv.split(b"\n", 2)[:2]
    block = (row + b"\n") * max(1, (1 << 20) // (len(row) + 1))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as stream:
        stream.write(header + b"\n")
        for _ in range(expanded_bytes // len(block) + 1):
            stream.write(block)
    return buffer.getvalue()


# Bytes that are not a table at all may be refused as undecodable, malformed, or as lacking the columns.
NOT_A_TABLE = (ErrorCode.MALFORMED_DATA, ErrorCode.MISSING_COLUMNS)


def _undecodable() -> Expect:
    return Expect(ErrorCode.UNDECODABLE, also_ok=NOT_A_TABLE)


def _records_without(frame: pd.DataFrame, column: str) -> bytes:
    records = json.loads(frame.to_json(orient="records"))
    return b"".join(json.dumps({k: v for k, v in r.items() if k != column}).encode() + b"\n" for r in records)


def build_cases(*, size_limit: int, prefix: str = "corpus/") -> list[Case]:
    """The corpus; ``size_limit`` is the pipeline's configured maximum input size in bytes."""
    frame = _frame()
    good_csv = _csv(frame)
    header = good_csv.split(b"\n", 1)[0] + b"\n"
    columns = list(frame.columns)
    # Longer than the pipeline accepts (shared.blobnames) but within the 1024 that Blob Storage allows.
    long_name = "long-" + "n" * (MAX_INPUT_NAME + 10 - len(prefix) - len("long-.csv")) + ".csv"

    makers: list[tuple[str, Callable[[], bytes], Expect]] = [
        ("empty.csv", lambda: b"", Expect(ErrorCode.EMPTY_FILE)),
        ("empty.jsonl", lambda: b"", Expect(ErrorCode.EMPTY_FILE)),
        ("whitespace-only.csv", lambda: b"\n\n  \n", Expect(ErrorCode.EMPTY_FILE, also_ok=(ErrorCode.HEADER_ONLY,))),
        ("header-only.csv", lambda: header, Expect(ErrorCode.HEADER_ONLY)),
        ("semicolon-delimited.csv", lambda: _csv(frame, sep=";"), Expect(ErrorCode.MISSING_COLUMNS)),
        ("tab-delimited.csv", lambda: _csv(frame, sep="\t"), Expect(ErrorCode.MISSING_COLUMNS)),
        ("missing-column.csv", lambda: _csv(frame.drop(columns=["tenure"])), Expect(ErrorCode.MISSING_COLUMNS)),
        ("extra-column.csv", lambda: _csv(frame.assign(Notes="x")), Expect(ErrorCode.UNEXPECTED_COLUMNS)),
        (
            "duplicated-column.csv",
            lambda: (
                header.rstrip(b"\n")
                + b",tenure\n"
                + b"".join(line + b",1\n" for line in good_csv.split(b"\n")[1:] if line)
            ),
            Expect(ErrorCode.DUPLICATE_COLUMNS),
        ),
        ("renamed-columns.csv", lambda: _csv(frame.rename(columns=str.upper)), Expect(ErrorCode.MISSING_COLUMNS)),
        (
            "wrong-types-all-rows.csv",
            lambda: _csv(frame.assign(tenure="many", MonthlyCharges="lots")),
            Expect(ErrorCode.NO_VALID_ROWS),
        ),
        (
            "wrong-types-some-rows.csv",
            lambda: _csv(_with_cells(frame, "tenure", {3: "twelve", 17: "1e999x"})),
            Expect(min_rows_failed=2),
        ),
        (
            "nan-values.csv",
            lambda: _csv(_with_cells(frame, "MonthlyCharges", {1: "NaN", 2: ""})),
            Expect(min_rows_failed=2),
        ),
        (
            "inf-values.csv",
            lambda: _csv(_with_cells(frame, "TotalCharges", {5: "inf", 6: "-Infinity"})),
            Expect(min_rows_failed=2),
        ),
        (
            "unknown-category.csv",
            lambda: _csv(_with_cells(frame, "Contract", {0: "Lifetime"})),
            Expect(min_rows_failed=1),
        ),
        (
            "ten-megabyte-field.csv",
            lambda: _csv(_with_cells(frame, "customerID", {0: "X" * (10 * 1024 * 1024)})),
            Expect(min_rows_failed=1, also_ok=(ErrorCode.MALFORMED_DATA, ErrorCode.TOO_LARGE)),
        ),
        (
            "non-utf8.csv",
            lambda: good_csv.replace(b"Female", "Fémale".encode("latin-1"), 1),
            _undecodable(),
        ),
        (
            "utf16.csv",
            lambda: good_csv.decode().encode("utf-16"),
            Expect(ErrorCode.UNDECODABLE, also_ok=(ErrorCode.MISSING_COLUMNS,)),
        ),
        ("utf8-bom.csv", lambda: b"\xef\xbb\xbf" + good_csv, Expect()),
        ("crlf-line-endings.csv", lambda: good_csv.replace(b"\n", b"\r\n"), Expect()),
        ("no-trailing-newline.csv", lambda: good_csv.rstrip(b"\n"), Expect()),
        ("trailing-blank-lines.csv", lambda: good_csv + b"\n\n\n", Expect()),
        (
            "quoted-newlines.csv",
            lambda: _csv(_with_cells(frame, "customerID", {4: 'line one\nline "two"'})),
            Expect(),
        ),
        (
            "formula-looking-values.csv",
            lambda: _csv(_with_cells(frame, "customerID", {0: '=HYPERLINK("http://x")', 1: "+1-2", 2: "@SUM(A1)"})),
            Expect(),
        ),
        ("gzip-ok.csv.gz", lambda: gzip.compress(good_csv), Expect()),
        ("gzip-truncated.csv.gz", lambda: gzip.compress(good_csv)[:-40], _undecodable()),
        ("not-really-gzip.csv.gz", lambda: good_csv, _undecodable()),
        ("gzip-bomb.csv.gz", lambda: _gzip_bomb(good_csv, max(size_limit * 4, 64 << 20)), Expect(ErrorCode.TOO_LARGE)),
        ("zip-archive.csv", lambda: _zip(good_csv), _undecodable()),
        ("random-binary.csv", lambda: bytes(range(256)) * 64, _undecodable()),
        ("excel-workbook.xlsx", _xlsx_like, Expect(ErrorCode.UNSUPPORTED_FORMAT)),
        ("excel-named-as.csv", _xlsx_like, _undecodable()),
        ("no-extension", lambda: good_csv, Expect(ErrorCode.UNSUPPORTED_FORMAT)),
        ("notes.txt", lambda: good_csv, Expect(ErrorCode.UNSUPPORTED_FORMAT)),
        # '.' and '..' segments never reach the pipeline: storage URLs are normalised, so such an upload fails.
        ("dots//empty-segment.csv", lambda: good_csv, Expect(ErrorCode.INVALID_NAME)),
        ("tab\tin-name.csv", lambda: good_csv, Expect(ErrorCode.INVALID_NAME)),
        (long_name, lambda: good_csv, Expect(ErrorCode.INVALID_NAME)),
        ("données-客户-ñ.csv", lambda: good_csv, Expect()),
        ("over-size-limit.csv", lambda: header + b"x" * (size_limit + 1), Expect(ErrorCode.TOO_LARGE)),
        ("jsonl-ok.jsonl", lambda: _jsonl(frame), Expect()),
        ("jsonl-bad-lines.jsonl", lambda: _jsonl(frame) + b"{not json\n[1,2]\n", Expect(min_rows_failed=2)),
        (
            "jsonl-all-garbage.jsonl",
            lambda: b"garbage\n" * 20,
            Expect(ErrorCode.NO_VALID_ROWS, also_ok=(ErrorCode.MALFORMED_DATA,)),
        ),
        (
            "jsonl-missing-key.jsonl",
            lambda: _records_without(frame, "tenure"),
            Expect(ErrorCode.MISSING_COLUMNS, also_ok=(ErrorCode.NO_VALID_ROWS,)),
        ),
        ("ndjson-gzip.ndjson.gz", lambda: gzip.compress(_jsonl(frame)), Expect()),
    ]
    assert len({name for name, _, _ in makers}) == len(makers), "case names must be unique"
    assert all(c in columns for c in ("tenure", "customerID", "Contract"))
    return [Case(name=prefix + name, data=make(), expect=expect) for name, make, expect in makers]
