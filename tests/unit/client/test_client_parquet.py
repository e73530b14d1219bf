"""Parquet files in the client: the local check before upload and rows for sync scoring."""

from __future__ import annotations

import gzip
import io
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from client.localfiles import LocalRejection, check_input, output_path, read_rows
from shared.contracts import DataFormat, ErrorCode

ROWS = pa.table(
    {
        "customerID": ["A-1", "B-2", "C-3"],
        "tenure": pa.array([3, 40, 7], pa.int64()),
        "MonthlyCharges": [29.5, 99.0, 50.25],
        "Contract": pa.array(["Month-to-month", "Two year", "One year"]).dictionary_encode(),
        "since": pa.array([datetime(2024, 1, 2, 3, 4, 5)] * 3, pa.timestamp("us")),
    }
)


def parquet_bytes(table: pa.Table = ROWS) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=2)
    return out.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_parquet_file_passes_and_keeps_its_name(tmp_path: Path) -> None:
    data = parquet_bytes()
    checked = check_input(write(tmp_path, "rows.parquet", data), max_bytes=10**6)
    assert (checked.format, checked.compression, checked.size) == (DataFormat.PARQUET, None, len(data))
    assert output_path(tmp_path / "rows.parquet", None).name == "rows.scored.parquet"
    zipped = check_input(write(tmp_path, "rows.parquet.gz", gzip.compress(data)), max_bytes=10**6)
    assert (zipped.format, zipped.compression) == (DataFormat.PARQUET, "gzip")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"id,name\n1,a\n", "does not start like a Parquet file"),
        (parquet_bytes()[:-10], "no footer"),
        (b"PAR1", "no footer"),
    ],
)
def test_a_file_that_is_not_whole_parquet_is_refused_before_upload(tmp_path: Path, data: bytes, problem: str) -> None:
    with pytest.raises(LocalRejection, match=problem) as caught:
        check_input(write(tmp_path, "rows.parquet", data), max_bytes=10**6)
    assert caught.value.code == ErrorCode.MALFORMED_DATA


def test_read_rows_gives_json_ready_values(tmp_path: Path) -> None:
    rows = read_rows(write(tmp_path, "rows.parquet.gz", gzip.compress(parquet_bytes())), limit=10)
    assert rows[1] == {
        "customerID": "B-2",
        "tenure": 40,
        "MonthlyCharges": 99.0,
        "Contract": "Two year",
        "since": "2024-01-02T03:04:05.000000",
    }


def test_read_rows_enforces_the_limit_and_names_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(LocalRejection, match="over the sync limit") as caught:
        read_rows(write(tmp_path, "a.parquet", parquet_bytes()), limit=2)
    assert caught.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(LocalRejection) as caught:
        read_rows(write(tmp_path, "b.parquet", b"PAR1 not really PAR1"), limit=2)
    assert caught.value.code == ErrorCode.UNDECODABLE
    with pytest.raises(LocalRejection) as caught:
        read_rows(write(tmp_path, "c.parquet", parquet_bytes(ROWS.slice(0, 0))), limit=2)
    assert caught.value.code == ErrorCode.NO_VALID_ROWS
