"""End to end on the whole local stack: a file dropped into ``input`` ends up scored (or reported) in ``output``."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from scoring.examples.churn.data import generate
from scoring.examples.churn.sample import frame as sample_frame
from scoring.examples.churn.sample import sample_bytes
from shared.contracts import PREDICTION_COLUMN, PROBABILITY_COLUMN, error_blob_name, output_blob_name
from tests.fixtures.stack import StackEndpoints
from tests.support.flow import reference_model

pytestmark = pytest.mark.slow

RESULT_TIMEOUT = 180.0


def upload(service: BlobServiceClient, name: str, data: bytes) -> None:
    service.get_container_client("input").upload_blob(
        name, data, overwrite=True, metadata={"session_id": f"e2e-{uuid.uuid4().hex[:8]}"}
    )


def wait_for_blob(
    container: ContainerClient, names: list[str], logs: Path, timeout: float = RESULT_TIMEOUT
) -> tuple[str, bytes]:
    """The first of ``names`` to appear, with its content; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in names:
            try:
                return name, container.download_blob(name).readall()
            except ResourceNotFoundError:
                continue
        time.sleep(0.5)
    pytest.fail(f"none of {names} appeared in {container.container_name} within {timeout:.0f}s; service logs: {logs}")


def test_csv_file_is_scored_into_output(stack: StackEndpoints, blobs: BlobServiceClient) -> None:
    frame = generate(25, seed=11, label=False)
    name = f"e2e/{uuid.uuid4().hex[:8]}/customers.csv"
    upload(blobs, name, frame.to_csv(index=False).encode())

    outputs = blobs.get_container_client("output")
    found, data = wait_for_blob(outputs, [output_blob_name(name), error_blob_name(name)], stack.log_dir)

    assert found == output_blob_name(name), data[:500]
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == len(frame)
    assert list(rows[0]) == [*frame.columns, PREDICTION_COLUMN, PROBABILITY_COLUMN]
    assert reference_model().check_rows(frame, rows) == []


def test_jsonl_file_is_scored_into_output(stack: StackEndpoints, blobs: BlobServiceClient) -> None:
    frame = generate(12, seed=12, label=False)
    records = json.loads(frame.astype(object).to_json(orient="records"))
    name = f"e2e/{uuid.uuid4().hex[:8]}/customers.jsonl"
    upload(blobs, name, "".join(json.dumps(r) + "\n" for r in records).encode())

    outputs = blobs.get_container_client("output")
    found, data = wait_for_blob(outputs, [output_blob_name(name), error_blob_name(name)], stack.log_dir)

    assert found == output_blob_name(name), data[:500]
    scored = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    assert len(scored) == len(records)
    for original, out in zip(records, scored, strict=True):
        assert {k: out[k] for k in original} == original
    assert reference_model().check_rows(frame, scored) == []


def test_parquet_file_is_scored_into_parquet_output(stack: StackEndpoints, blobs: BlobServiceClient) -> None:
    frame = sample_frame(300, 13)
    name = f"e2e/{uuid.uuid4().hex[:8]}/customers.parquet"
    upload(blobs, name, sample_bytes(300, "parquet", seed=13, row_group_rows=100))

    outputs = blobs.get_container_client("output")
    found, data = wait_for_blob(outputs, [output_blob_name(name), error_blob_name(name)], stack.log_dir)

    assert found == output_blob_name(name), data[:500]
    properties = outputs.get_blob_client(found).get_blob_properties()
    assert properties.content_settings.content_type == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(data))
    assert table.column_names == [*frame.columns, PREDICTION_COLUMN, PROBABILITY_COLUMN]
    assert table.select(list(frame.columns)).to_pylist() == frame.to_dict("records")
    assert reference_model().check_rows(frame, table.to_pylist()) == []


def test_bad_file_gets_an_error_record_and_no_output(stack: StackEndpoints, blobs: BlobServiceClient) -> None:
    name = f"e2e/{uuid.uuid4().hex[:8]}/not-customers.csv"
    upload(blobs, name, b"colour,size\nred,3\nblue,4\n")
    output = blobs.get_container_client("output")

    found, data = wait_for_blob(output, [error_blob_name(name), output_blob_name(name)], stack.log_dir)

    assert found == error_blob_name(name), data[:500]
    record = json.loads(data)
    assert "missing_columns" in json.dumps(record), record
    with pytest.raises(ResourceNotFoundError):
        output.download_blob(output_blob_name(name)).readall()
