"""The example models and sample files: each kind trains, saves a usable MLflow model and writes every format."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.models import Model

from scoring import sample, train
from scoring.examples import KINDS, examples
from scoring.examples.churn.sample import BAD_KINDS, PARQUET_BAD_KINDS, sample_bytes
from scoring.examples.files import FORMATS, encode


def _read(data: bytes, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(data))
    if fmt == "jsonl":
        return pd.read_json(io.BytesIO(data), lines=True)
    return pq.read_table(io.BytesIO(data)).to_pandas()


def test_every_kind_is_registered_with_a_trainer_and_rows() -> None:
    assert set(examples()) == set(KINDS) == {"churn", "multiclass", "regression"}


@pytest.mark.parametrize(
    ("kind", "metric", "floor"), [("multiclass", "holdout_accuracy", 0.9), ("regression", "holdout_r2", 0.3)]
)
def test_bundled_data_examples_save_skops_models_with_inferred_signatures(
    tmp_path: Path, kind: str, metric: str, floor: float
) -> None:
    out = tmp_path / kind
    train.main(["--kind", kind, "--out", str(out)])
    meta = Model.load(str(out / "MLmodel"))
    assert meta.flavors["sklearn"]["serialization_format"] == "skops"
    assert meta.metadata is not None and meta.metadata[metric] > floor
    rows = examples()[kind].frame(200, 3)
    assert meta.signature is not None
    assert list(meta.signature.inputs.input_names()) == list(rows.columns)
    answer = mlflow.pyfunc.load_model(str(out)).predict(rows)
    assert len(answer) == 200
    if kind == "multiclass":
        assert set(answer) == {"setosa", "versicolor", "virginica"}
    else:
        assert np.isfinite(answer).all() and 25 < float(np.mean(answer)) < 350


def test_rows_do_not_apply_to_bundled_data(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--rows does not apply"):
        train.main(["--kind", "regression", "--rows", "5000", "--out", str(tmp_path / "m")])


def test_train_refuses_to_replace_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="refusing to replace"):
        train.main(["--kind", "multiclass", "--out", str(tmp_path)])
    assert (tmp_path / "keep.txt").exists()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_sample_files_of_every_kind_and_format_read_back(tmp_path: Path, kind: str, fmt: str) -> None:
    out = tmp_path / f"rows.{fmt}"
    sample.main(["--kind", kind, "--format", fmt, "--rows", "120", "--seed", "4", "--out", str(out)])
    expected = examples()[kind].frame(120, 4)
    back = _read(out.read_bytes(), fmt)
    assert list(back.columns) == list(expected.columns) and len(back) == 120
    numbers = expected.select_dtypes("number").columns
    np.testing.assert_allclose(back[numbers].to_numpy(dtype=float), expected[numbers].to_numpy(dtype=float))


def test_gzip_applies_to_text_formats_only(tmp_path: Path) -> None:
    out = tmp_path / "rows.csv.gz"
    sample.main(["--kind", "multiclass", "--rows", "10", "--gzip", "--out", str(out)])
    assert gzip.decompress(out.read_bytes()).startswith(b"sepal_length,")
    with pytest.raises(SystemExit):
        sample.main(["--format", "parquet", "--gzip", "--out", str(tmp_path / "x.parquet")])


def test_parquet_samples_have_the_asked_row_groups() -> None:
    data = sample_bytes(1000, "parquet", seed=1, row_group_rows=300)
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 4


@pytest.mark.parametrize("bad", sorted(PARQUET_BAD_KINDS))
def test_every_parquet_bad_kind_is_what_it_says(bad: str) -> None:
    data = sample_bytes(20, "parquet", seed=2, bad=bad)
    if bad in ("empty", "not-tabular", "truncated"):
        with pytest.raises(Exception):  # noqa: B017 - pyarrow raises ArrowInvalid or OSError by case
            pq.read_table(io.BytesIO(data))
        return
    table = pq.ParquetFile(io.BytesIO(data)).read()  # read_table refuses duplicated names
    good = sample_bytes(20, "parquet", seed=2)
    names = pq.read_schema(io.BytesIO(good)).names
    checks = {
        "header-only": lambda: table.num_rows == 0 and table.column_names == names,
        "missing-column": lambda: "Contract" not in table.column_names,
        "extra-column": lambda: table.column_names == [*names, "Extra"],
        "duplicate-column": lambda: table.column_names.count("tenure") == 2,
        "wrong-types": lambda: set(table.column("tenure").to_pylist()) == {"many"},
        "nan": lambda: (
            table.column("MonthlyCharges").null_count == 0 and all(np.isnan(table.column("MonthlyCharges").to_numpy()))
        ),
        "inf": lambda: all(np.isinf(table.column("TotalCharges").to_numpy())),
        "some-bad-rows": lambda: (
            table.column("tenure")[1].as_py() is None
            and table.column("MonthlyCharges")[4].as_py() is None
            and table.column("Contract")[8].as_py() == "Weekly"
        ),
        "quoted-multiline": lambda: "\n" in table.column("customerID")[0].as_py(),
    }
    assert checks[bad]()


def test_text_bad_kinds_are_unchanged_by_the_parquet_ones() -> None:
    assert set(PARQUET_BAD_KINDS) - {"truncated"} <= set(BAD_KINDS)
    with pytest.raises(ValueError, match="Parquet only"):
        sample_bytes(20, "csv", bad="truncated")
    with pytest.raises(ValueError, match="does not exist for Parquet"):
        sample_bytes(20, "parquet", bad="ragged")


def test_entry_points_run_as_modules(tmp_path: Path) -> None:
    out = tmp_path / "iris.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scoring.sample",
            "--kind",
            "multiclass",
            "--format",
            "jsonl",
            "--rows",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote" in done.stdout
    assert [sorted(json.loads(line)) for line in out.read_text().splitlines()] == [
        sorted(encode(examples()["multiclass"].frame(1, 0), "csv").decode().splitlines()[0].split(","))
    ] * 3
