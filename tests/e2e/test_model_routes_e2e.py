"""Several models at once on one local stack: the stack ``python -m devstack demo`` starts from a stopped one,
which serves the ``multiclass`` and ``regression`` examples (``--model NAME=DIR``) beside the default route.

The demo's own summary must show each routed sample scored by its model. Then, on the same stack: each route
has its own ``azmlinfsrv``; a blob uploaded with metadata ``model=NAME`` must be scored by that model (CSV,
JSON Lines and Parquet, checked against the model's own in-process predictions), a file without ``model``
metadata by the default route's example model, and a bad file per route must end as an error record with no
output. One stack serves both, since starting one with three scoring servers is the slow part.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from devstack.stack import PORT_SETTINGS, REPO, LocalStack, StackSettings
from scoring.examples import examples
from scoring.examples.churn.data import generate
from scoring.examples.files import to_parquet
from shared.contracts import PREDICTION_COLUMN, PROBABILITY_COLUMN, error_blob_name, output_blob_name
from tests.support.flow import reference_model, stack_ports

pytestmark = pytest.mark.slow

ROUTES = ("multiclass", "regression")
RESULT_TIMEOUT = 240.0


@dataclass(frozen=True)
class RoutedStack:
    stack: LocalStack
    model_dirs: dict[str, Path]
    demo: subprocess.CompletedProcess[str]  # the `python -m devstack demo` run that started the stack

    @property
    def settings(self) -> StackSettings:
        return self.stack.settings


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutedStack]:
    ports = stack_ports()
    flags = [arg for name, port in ports.items() for arg in (PORT_SETTINGS[name][1], str(port))]
    base = tmp_path_factory.mktemp("routed-stack")
    where = ["--base-dir", str(base), *flags]
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "devstack", "demo", "--timeout", "240", *where],
            cwd=REPO, capture_output=True, text=True, timeout=560, check=False,
        )  # fmt: skip
        settings = StackSettings.load(base, ports)  # with the model routes the demo's `up` saved
        yield RoutedStack(LocalStack(settings), {m.name: m.model_dir for m in settings.models}, demo)
    finally:
        subprocess.run(
            [sys.executable, "-m", "devstack", "down", *where], cwd=REPO, capture_output=True, timeout=120, check=False
        )


@pytest.fixture(scope="module")
def blobs(routed: RoutedStack) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(routed.settings.storage_connection_string) as service:
        yield service


def rows_of(name: str, data: bytes) -> list[dict[str, Any]]:
    if name.endswith(".csv"):
        return list(csv.DictReader(io.StringIO(data.decode())))
    if name.endswith(".parquet"):
        records: list[dict[str, Any]] = pd.read_parquet(io.BytesIO(data)).to_dict(orient="records")
        return records
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def encode(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "parquet":
        return to_parquet(frame)
    records = json.loads(frame.astype(object).to_json(orient="records"))
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def mismatches(model_dir: Path, frame: pd.DataFrame, scored: list[dict[str, Any]]) -> list[str]:
    """Rows whose prediction (and probability, for a classifier) differ from the model's in-process answer."""
    pipeline = mlflow.sklearn.load_model(str(model_dir))
    expected = pipeline.predict(frame)
    probabilities = pipeline.predict_proba(frame).max(axis=1) if hasattr(pipeline, "predict_proba") else None
    problems = []
    assert len(scored) == len(frame), f"{len(scored)} output rows for {len(frame)} input rows"
    for i, row in enumerate(scored):
        got, want = row[PREDICTION_COLUMN], expected[i]
        if isinstance(want, (float, np.floating)):
            if abs(float(got) - float(want)) > 1e-9 * max(1.0, abs(float(want))):
                problems.append(f"row {i}: prediction {got} != {want}")
        elif str(got) != str(want):
            problems.append(f"row {i}: prediction {got!r} != {want!r}")
        if probabilities is not None and abs(float(row[PROBABILITY_COLUMN]) - probabilities[i]) > 1e-9:
            problems.append(f"row {i}: probability {row[PROBABILITY_COLUMN]} != {probabilities[i]}")
    return problems


def wait_for_all(container: ContainerClient, names: list[str], logs: Path) -> dict[str, tuple[str, bytes]]:
    """input name -> (blob found, its content): the output or the error record of each file."""
    found: dict[str, tuple[str, bytes]] = {}
    deadline = time.monotonic() + RESULT_TIMEOUT
    while len(found) < len(names) and time.monotonic() < deadline:
        for name in names:
            if name in found:
                continue
            for candidate in (output_blob_name(name), error_blob_name(name)):
                try:
                    found[name] = (candidate, container.download_blob(candidate).readall())
                    break
                except ResourceNotFoundError:
                    continue
        if len(found) < len(names):
            time.sleep(0.5)
    missing = sorted(set(names) - set(found))
    assert not missing, f"no output or error record within {RESULT_TIMEOUT:.0f}s for {missing}; logs: {logs}"
    return found


def test_demo_starts_a_stack_with_two_more_models_and_routes_files_to_each(routed: RoutedStack) -> None:
    """From a stopped stack, ``demo`` serves the multiclass and regression examples beside the default route."""
    done = routed.demo
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if re.match(r"^(iris|diabetes)-", line)}
    stems = ("iris-flowers", "diabetes-patients")
    assert set(lines) == {f"{stem}.{ext}" for stem in stems for ext in ("csv", "jsonl", "parquet")}
    for name, cells in lines.items():
        assert cells[1] == ("multiclass" if name.startswith("iris") else "regression"), cells
        assert " ".join(cells[3:7]) == "scored, matches the model", cells


def test_each_route_has_its_own_healthy_scoring_server(routed: RoutedStack) -> None:
    statuses = {st.name: st for st in routed.stack.statuses()}
    for route in ROUTES:
        server = statuses[f"scoring-{route}"]
        assert server.state == "running" and server.healthy, server
        assert f"route {route}" in server.listens and str(routed.model_dirs[route]) in server.listens
    assert statuses["scoring"].healthy and "route default" in statuses["scoring"].listens


def test_files_are_scored_by_the_model_their_metadata_names(routed: RoutedStack, blobs: BlobServiceClient) -> None:
    run = f"routes-{uuid.uuid4().hex[:8]}"
    inbox = blobs.get_container_client("input")
    frames: dict[str, tuple[str | None, pd.DataFrame]] = {}
    bad: dict[str, str] = {}
    for i, route in enumerate(ROUTES):
        for fmt, rows in (("csv", 30), ("jsonl", 17), ("parquet", 23)):
            frame = examples()[route].frame(rows, 100 + i)
            name = f"{run}/{route}-rows.{fmt}"
            inbox.upload_blob(name, encode(frame, fmt), metadata={"model": route, "session_id": run})
            frames[name] = (route, frame)
        frame = examples()[route].frame(5, 200 + i)
        name = f"{run}/{route}-missing-column.csv"
        inbox.upload_blob(name, encode(frame.drop(columns=frame.columns[0]), "csv"), metadata={"model": route})
        bad[name] = route
    default_frame = generate(12, seed=21, label=False)
    default_name = f"{run}/no-model-metadata.csv"
    inbox.upload_blob(default_name, encode(default_frame, "csv"), metadata={"session_id": run})

    results = wait_for_all(blobs.get_container_client("output"), [*frames, *bad, default_name], routed.settings.log_dir)

    for name, (route, frame) in frames.items():
        found, data = results[name]
        assert found == output_blob_name(name), f"{name} (model {route}) ended as {found}: {data[:300]!r}"
        scored = rows_of(name, data)
        assert mismatches(routed.model_dirs[str(route)], frame, scored) == [], name
        assert set(frame.columns) <= set(scored[0]), "the input columns are kept"
    for name, route in bad.items():
        found, data = results[name]
        assert found == error_blob_name(name), f"{name} (model {route}) was not refused: {data[:300]!r}"
        record = json.loads(data)
        assert record["error"]["code"] == "missing_columns", record
    found, data = results[default_name]
    assert found == output_blob_name(default_name), data[:300]
    assert reference_model().check_rows(default_frame, rows_of(default_name, data)) == []
