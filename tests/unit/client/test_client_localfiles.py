"""Local checks before upload, rows for sync scoring, and output file names."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from client.localfiles import LocalRejection, check_input, output_path, read_rows, scored_name
from shared.contracts import DataFormat, ErrorCode

CSV = "customerID,tenure,MonthlyCharges,Contract\nA-1,3,29.5,Month-to-month\nB-2,40,99.0,Two year\n"
JSONL = '{"customerID": "A-1", "tenure": 3}\n{"customerID": "B-2", "tenure": 40}\n'


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "fmt", "compression"),
    [
        ("a.csv", CSV.encode(), DataFormat.CSV, None),
        ("a.CSV.gz", gzip.compress(CSV.encode(), mtime=0), DataFormat.CSV, "gzip"),
        ("a.jsonl", JSONL.encode(), DataFormat.JSONL, None),
        ("a.ndjson.gz", gzip.compress(JSONL.encode(), mtime=0), DataFormat.JSONL, "gzip"),
    ],
)
def test_good_files_pass(tmp_path: Path, name: str, data: bytes, fmt: DataFormat, compression: str | None) -> None:
    checked = check_input(write(tmp_path, name, data), max_bytes=10_000)
    assert (checked.format, checked.compression, checked.size) == (fmt, compression, len(data))


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("a.txt", CSV.encode(), ErrorCode.UNSUPPORTED_FORMAT),
        ("a.csv", b"", ErrorCode.EMPTY_FILE),
        ("a.csv", b"\n\n  \n", ErrorCode.EMPTY_FILE),
        ("a.csv", b"customerID,tenure\n", ErrorCode.HEADER_ONLY),
        ("a.csv.gz", CSV.encode(), ErrorCode.UNDECODABLE),
        ("a.csv.gz", gzip.compress(CSV.encode(), mtime=0)[:20], ErrorCode.UNDECODABLE),
        ("a.csv", b"id,name\n1,\xff\xfe\n", ErrorCode.UNDECODABLE),
        ("a.jsonl", b"not json\n", ErrorCode.MALFORMED_DATA),
        ("a.jsonl", b"[1, 2]\n", ErrorCode.MALFORMED_DATA),
    ],
)
def test_bad_files_are_rejected_with_a_code(tmp_path: Path, name: str, data: bytes, code: ErrorCode) -> None:
    with pytest.raises(LocalRejection) as caught:
        check_input(write(tmp_path, name, data), max_bytes=10_000)
    assert caught.value.code == code
    assert caught.value.message


def test_too_large_names_the_limit_setting(tmp_path: Path) -> None:
    with pytest.raises(LocalRejection, match="MAX_INPUT_BYTES") as caught:
        check_input(write(tmp_path, "a.csv", CSV), max_bytes=10)
    assert caught.value.code == ErrorCode.TOO_LARGE


def test_a_long_file_is_checked_by_its_head_only(tmp_path: Path) -> None:
    body = CSV + "C-3,1,1.0,One year\n" * 20_000  # well past the peeked 64 KiB; the cut last line is ignored
    assert check_input(write(tmp_path, "a.csv", body), max_bytes=10**7).size == len(body)


def test_read_rows_types_csv_numbers_and_keeps_text(tmp_path: Path) -> None:
    rows = read_rows(write(tmp_path, "a.csv.gz", gzip.compress(CSV.encode())), limit=10)
    assert rows == [
        {"customerID": "A-1", "tenure": 3, "MonthlyCharges": 29.5, "Contract": "Month-to-month"},
        {"customerID": "B-2", "tenure": 40, "MonthlyCharges": 99.0, "Contract": "Two year"},
    ]
    assert read_rows(write(tmp_path, "b.jsonl", JSONL + "\n"), limit=10)[1] == {"customerID": "B-2", "tenure": 40}


def test_read_rows_enforces_the_limit_and_reports_bad_lines(tmp_path: Path) -> None:
    with pytest.raises(LocalRejection, match="over the sync limit"):
        read_rows(write(tmp_path, "a.csv", CSV), limit=1)
    with pytest.raises(LocalRejection, match="line 2 is not JSON"):
        read_rows(write(tmp_path, "a.jsonl", '{"a": 1}\n{oops\n'), limit=10)


@pytest.mark.parametrize(
    ("name", "scored"),
    [("churn.csv", "churn.scored.csv"), ("x.jsonl.gz", "x.scored.jsonl.gz"), ("a.b.ndjson", "a.b.scored.ndjson")],
)
def test_scored_name(name: str, scored: str) -> None:
    assert scored_name(name) == scored


def test_output_path_never_overwrites_the_input(tmp_path: Path) -> None:
    source = write(tmp_path, "churn.csv", CSV)
    assert output_path(source, None) == tmp_path / "churn.scored.csv"
    assert output_path(source, tmp_path / "out") == tmp_path / "out" / "churn.csv"
    assert output_path(source, tmp_path) == tmp_path / "churn.scored.csv"


def test_only_plain_numbers_become_numbers(tmp_path: Path) -> None:
    data = "a,b,c,d,e,f,g\n007,-3,2.50,1e3,nan, 4 ,x1\n"
    (row,) = read_rows(write(tmp_path, "n.csv", data), limit=10)
    assert row == {"a": "007", "b": -3, "c": 2.5, "d": 1000.0, "e": "nan", "f": 4, "g": "x1"}
