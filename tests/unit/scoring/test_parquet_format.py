"""Parquet in, Parquet out: row groups read from a spool, output written streamed, equal to the model's own answers."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scoring.examples.churn.sample import sample_bytes
from scoring.service.chunk import ChunkResult
from scoring.service.errors import ScoringError
from scoring.service.model import ScoringModel, load_model
from scoring.service.parquet_format import (
    FIRST_BATCH_ROWS,
    MIN_BATCH_ROWS,
    ParquetFormat,
    ParquetOutput,
    read_batches,
    spooled,
)
from scoring.service.settings import ScoringSettings
from scoring.service.validation import Validator
from shared.contracts import ErrorCode
from tests.support import models
from tests.support.models import UserModel

PIECE = 1000


def parquet(frame: pd.DataFrame | pa.Table, row_group_rows: int) -> bytes:
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group_rows)
    return out.getvalue()


def run(data: bytes, model: ScoringModel, chunk_bytes: int = 4096) -> tuple[bytes, list[ChunkResult]]:
    """What the async job does with a format: chunks in a row, each scored, then the closing bytes."""
    fmt = ParquetFormat(Validator(model.spec, 20), model, ScoringSettings(model_dir=Path("."), chunk_bytes=chunk_bytes))
    out = bytearray()
    parts: list[ChunkResult] = []
    for chunk in fmt.chunks(iter([data[i : i + PIECE] for i in range(0, len(data), PIECE)])):
        part = fmt.score(chunk, sum(p.rows for p in parts) + 1)
        parts.append(part)
        out += part.data
    out += fmt.finish(sum(p.rows for p in parts))
    return bytes(out), parts


def _many(model: UserModel, rows: int) -> pd.DataFrame:
    return pd.concat([model.inputs] * (rows // len(model.inputs) + 1), ignore_index=True).head(rows)


@pytest.mark.parametrize(
    "name",
    [models.IRIS_MULTICLASS, models.BINARY_INT_ONEHOT, models.BOOL_LABEL, models.QUOTED_LABELS, models.GBR_SKOPS],
)
def test_output_is_the_input_plus_the_models_own_predictions(user_model: Callable[[str], UserModel], name: str) -> None:
    model = user_model(name)
    rows = _many(model, 5000)
    out, parts = run(parquet(rows, 400), load_model(model.path))
    assert len(parts) >= 3 and all(p.data for p in parts)  # streamed: every batch produced output bytes
    result = pq.ParquetFile(io.BytesIO(out))
    assert result.metadata.num_row_groups == len(parts)
    arrow = result.read()
    table = arrow.to_pandas()
    pd.testing.assert_frame_equal(table[list(rows.columns)], rows, check_dtype=False)
    expected = model.predict(rows)
    if model.kind == models.CLASSIFIER:
        assert table["prediction"].tolist() == list(expected)
        label = arrow.column("prediction").to_pylist()[0]
        assert type(label) is type(np.asarray(expected).tolist()[0])  # the label keeps its own type
        np.testing.assert_allclose(table["probability"], model.predict_proba(rows).max(axis=1), rtol=0, atol=1e-9)
    else:
        assert list(table.columns) == [*rows.columns, "prediction"]
        np.testing.assert_allclose(table["prediction"], expected, rtol=0, atol=1e-9)


def test_a_pyfunc_frame_answer_becomes_its_columns(user_model: Callable[[str], UserModel]) -> None:
    model = user_model(models.PYFUNC_FRAME)
    out, _ = run(parquet(model.inputs, 7), load_model(model.path))
    table = pq.read_table(io.BytesIO(out)).to_pandas()
    expected = model.predict()
    assert list(table.columns) == [*model.inputs.columns, *expected.columns]
    pd.testing.assert_frame_equal(table[list(expected.columns)], expected, check_dtype=False)


@pytest.fixture(scope="module")
def churn(churn_model_dir: Path) -> ScoringModel:
    return load_model(churn_model_dir)


def test_bad_rows_are_reported_with_their_file_row_numbers_and_the_rest_scored(churn: ScoringModel) -> None:
    data = sample_bytes(3000, "parquet", seed=3, bad="some-bad-rows", row_group_rows=1000)
    out, parts = run(data, churn)
    errors = [e for p in parts for e in p.errors]
    assert [e.row for e in errors] == [2, 5, 9]
    assert "tenure" in errors[0].message and "MonthlyCharges" in errors[1].message and "Weekly" in errors[2].message
    assert sum(p.scored for p in parts) == 2997 and sum(p.failed for p in parts) == 3
    assert pq.ParquetFile(io.BytesIO(out)).metadata.num_rows == 2997


def test_categorical_columns_are_read_and_written_as_plain_values(churn: ScoringModel) -> None:
    rows = pd.read_parquet(io.BytesIO(sample_bytes(500, "parquet", seed=4)))
    categorical = rows.astype({"Contract": "category", "PaymentMethod": "category"})
    out, _ = run(parquet(categorical, 200), churn)
    plain, _ = run(parquet(rows, 200), churn)
    schema = pq.read_schema(io.BytesIO(out))
    assert not any(pa.types.is_dictionary(f.type) for f in schema)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(out)), pd.read_parquet(io.BytesIO(plain)))


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ("not-tabular", ErrorCode.MALFORMED_DATA),
        ("truncated", ErrorCode.MALFORMED_DATA),
        ("missing-column", ErrorCode.MISSING_COLUMNS),
        ("extra-column", ErrorCode.UNEXPECTED_COLUMNS),
        ("duplicate-column", ErrorCode.DUPLICATE_COLUMNS),
        ("header-only", ErrorCode.HEADER_ONLY),
    ],
)
def test_unusable_files_fail_with_their_code(churn: ScoringModel, bad: str, code: ErrorCode) -> None:
    with pytest.raises(ScoringError) as caught:
        run(sample_bytes(50, "parquet", seed=5, bad=bad), churn)
    assert caught.value.code == code


def test_no_bytes_at_all_gives_no_chunk(churn: ScoringModel) -> None:
    fmt = ParquetFormat(Validator(churn.spec, 20), churn, ScoringSettings(model_dir=Path(".")))
    assert list(fmt.chunks(iter([b""]))) == []


def test_wrong_types_and_non_finite_numbers_fail_every_row(churn: ScoringModel) -> None:
    for bad, column in (("wrong-types", "tenure"), ("nan", "MonthlyCharges"), ("inf", "TotalCharges")):
        out, parts = run(sample_bytes(30, "parquet", seed=6, bad=bad), churn)
        assert sum(p.scored for p in parts) == 0 and sum(p.failed for p in parts) == 30
        assert column in parts[0].errors[0].message
        assert out == b""  # nothing written: the job reports no_valid_rows


def test_batches_follow_the_decoded_size_and_stay_within_a_row_group() -> None:
    data = sample_bytes(20_000, "parquet", seed=7, row_group_rows=3000)
    with spooled(iter([data])) as file:
        tables = list(read_batches(pq.ParquetFile(file), 256 * 1024))
    sizes = [t.num_rows for t in tables]
    assert sum(sizes) == 20_000
    assert sizes[0] == min(FIRST_BATCH_ROWS, 3000)
    later = [t.nbytes for t in tables[1:] if t.num_rows >= MIN_BATCH_ROWS and t.num_rows not in (3000, 2000)]
    assert later and all(n <= 256 * 1024 * 1.2 for n in later)  # about the asked decoded size
    groups = np.cumsum(sizes)
    assert set(range(3000, 20_000, 3000)) <= set(groups)  # no batch crosses a row group boundary


def test_an_output_whose_types_change_is_cast_or_refused() -> None:
    output = ParquetOutput()
    output.write(pa.table({"a": pa.array([1.5]), "b": ["x"]}))
    output.write(pa.table({"a": pa.array([2], pa.int64()), "b": ["y"]}))  # int into the float column
    with pytest.raises(ScoringError, match="changed between batches"):
        output.write(pa.table({"a": ["not a number"], "b": ["z"]}))
    with pytest.raises(ScoringError):
        output.write(pa.table({"other": [1.0]}))
