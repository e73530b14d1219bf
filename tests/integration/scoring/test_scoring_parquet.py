"""Parquet through the real azmlinfsrv's async route: Parquet in, Parquet out, equal to the model's own answers.

The session's churn server reads a file of many row groups (small chunk size, so many batches) and writes
the input rows plus ``prediction`` / ``probability`` as Parquet, compared row by row with the model's
in-process ``predict_proba``; bad rows are reported with their file row numbers while the rest are scored;
``.parquet.gz`` comes back gzip-compressed. A dedicated server with the default chunk size shows that
the worker's peak memory follows the row group, not the file: a file of four times the row groups raises
the peak by much less than the extra rows' decoded size.
"""

from __future__ import annotations

import gzip
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from scoring.examples.churn.sample import frame, sample_bytes
from shared.contracts import DataFormat, ErrorCode, InferenceResult, ResultStatus
from tests.fixtures.azurite import Azurite
from tests.fixtures.scoring import ScoringServer, ScoringServerFactory
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.support.scoring import output_bytes, result_of_request, submit

pytestmark = pytest.mark.slow

TOLERANCE = 1e-9
MIB = 1024 * 1024


def score(
    server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator, data: bytes, name: str, wait: float = 120
) -> InferenceResult:
    compression = "gzip" if name.endswith(".gz") else None
    blob = f"parquet-{uuid.uuid4().hex[:8]}/{name}"
    request = submit(server.score_url, azurite, blob, data, DataFormat.PARQUET, compression=compression)
    return result_of_request(servicebus.connection_string, request, wait=wait)


def check_against_model(out: bytes, rows: pd.DataFrame, model_dir: Path) -> None:
    table = pq.read_table(io.BytesIO(out)).to_pandas()
    assert list(table.columns) == [*rows.columns, "prediction", "probability"]
    pd.testing.assert_frame_equal(table[list(rows.columns)], rows, check_dtype=False)
    model = mlflow.sklearn.load_model(str(model_dir))
    proba = model.predict_proba(rows)
    assert table["prediction"].tolist() == model.predict(rows).tolist()
    np.testing.assert_allclose(table["probability"], proba.max(axis=1), rtol=0, atol=TOLERANCE)


def test_a_parquet_file_of_many_row_groups_comes_back_as_parquet(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    rows = frame(6000, 41)
    data = sample_bytes(6000, "parquet", seed=41, row_group_rows=500)
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 12
    result = score(scoring_server, azurite, servicebus, data, "many-groups.parquet")
    assert result.status == ResultStatus.SUCCEEDED, result.error
    assert (result.rows_scored, result.rows_failed) == (6000, 0)
    assert result.output is not None and result.output.format == DataFormat.PARQUET
    assert result.output.blob_url is not None  # over the inline limit: staged block by block
    out = output_bytes(result)
    assert pq.ParquetFile(io.BytesIO(out)).num_row_groups > 1  # written batch by batch
    check_against_model(out, rows, scoring_server.model_dir)


def test_bad_rows_are_reported_and_the_rest_scored(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = sample_bytes(200, "parquet", seed=42, bad="some-bad-rows")
    result = score(scoring_server, azurite, servicebus, data, "some-bad.parquet")
    assert result.status == ResultStatus.SUCCEEDED, result.error
    assert (result.rows_scored, result.rows_failed) == (197, 3)
    assert [e.row for e in result.row_errors] == [2, 5, 9]
    good = frame(200, 42).drop(index=[1, 4, 8]).reset_index(drop=True)
    check_against_model(output_bytes(result), good, scoring_server.model_dir)


def test_gzipped_parquet_comes_back_gzipped(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    data = gzip.compress(sample_bytes(300, "parquet", seed=43, row_group_rows=100))
    result = score(scoring_server, azurite, servicebus, data, "zipped.parquet.gz")
    assert result.status == ResultStatus.SUCCEEDED, result.error
    assert result.output is not None and result.output.compression == "gzip"
    check_against_model(output_bytes(result), frame(300, 43), scoring_server.model_dir)


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ("truncated", ErrorCode.MALFORMED_DATA),
        ("not-tabular", ErrorCode.MALFORMED_DATA),
        ("missing-column", ErrorCode.MISSING_COLUMNS),
        ("header-only", ErrorCode.HEADER_ONLY),
        ("empty", ErrorCode.EMPTY_FILE),
        ("wrong-types", ErrorCode.NO_VALID_ROWS),
    ],
)
def test_unusable_parquet_files_fail_with_their_code(
    scoring_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator, bad: str, code: ErrorCode
) -> None:
    result = score(scoring_server, azurite, servicebus, sample_bytes(50, "parquet", seed=44, bad=bad), f"{bad}.parquet")
    assert result.status == ResultStatus.FAILED
    assert result.error is not None and result.error.code == code, result.error


# --------------------------------------------------------------------------------------------------
# memory: bounded by the row group, not the file


@pytest.fixture(scope="module")
def roomy_server(scoring_server_factory: ScoringServerFactory) -> Iterator[ScoringServer]:
    """A server with the service's default chunk size and room for a file of tens of MiB."""
    yield scoring_server_factory(
        MAX_INPUT_BYTES=str(256 * MIB), SCORING_MAX_DATA_BYTES=str(1024 * MIB), SCORING_CHUNK_BYTES=str(4 * MIB)
    )


def _worker_processes(server: ScoringServer) -> list[psutil.Process]:
    master = psutil.Process(server.proc.pid)
    return [master, *master.children(recursive=True)]


def _peak_mib(procs: list[psutil.Process]) -> float:
    """Sum of the processes' peak resident sizes (VmHWM) since the last reset."""
    total = 0
    for proc in procs:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def _reset_peaks(procs: list[psutil.Process]) -> None:
    for proc in procs:
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")


def test_peak_memory_follows_the_row_group_not_the_file(
    roomy_server: ScoringServer, azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    # Both files are large enough to fill every fixed buffer on the way (download pieces, output blocks);
    # the second has four times the row groups of the first.
    group = 25_000
    files = {"smaller": 8 * group, "larger": 32 * group}
    data = {name: sample_bytes(rows, "parquet", seed=45, row_group_rows=group) for name, rows in files.items()}
    extra_mib = (
        pq.read_table(io.BytesIO(data["larger"])).nbytes - pq.read_table(io.BytesIO(data["smaller"])).nbytes
    ) / MIB
    procs = _worker_processes(roomy_server)
    # A first file warms the worker (imports, thread pools, the allocator's pools) so both runs start alike.
    warm = sample_bytes(group, "parquet", seed=44, row_group_rows=group)
    assert score(roomy_server, azurite, servicebus, warm, "warm.parquet").status == ResultStatus.SUCCEEDED
    peaks = {}
    for name, rows in files.items():
        _reset_peaks(procs)
        result = score(roomy_server, azurite, servicebus, data[name], f"{name}.parquet", wait=300)
        assert result.status == ResultStatus.SUCCEEDED, result.error
        assert result.rows_scored == rows
        peaks[name] = _peak_mib(procs)
    growth = peaks["larger"] - peaks["smaller"]
    # Holding the file would add the extra rows' decoded size (about 150 MiB); the reader holds a row group.
    assert extra_mib > 100
    assert growth < extra_mib / 3, f"peak {peaks}; the larger file decodes to {extra_mib:.0f} MiB more"
