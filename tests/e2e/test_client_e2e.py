"""The CLI (`python -m client` as a subprocess) against the whole local stack: submit --wait, status, score."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scoring.examples.churn.sample import sample_bytes
from shared.contracts import INLINE_OUTPUT_MAX_BYTES, PREDICTION_COLUMN, PROBABILITY_COLUMN
from tests.fixtures.stack import StackEndpoints
from tests.support.flow import reference_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = "240"


def cli(stack: StackEndpoints, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DataStorage", "ServiceBus", "SCORING_"))}
    env.update(stack.client_env())
    return subprocess.run(
        [sys.executable, "-m", "client", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def jsonl_frame(data: bytes) -> pd.DataFrame:
    """A JSON Lines input as the frame the model sees (customer ids stay text)."""
    return pd.DataFrame([json.loads(line) for line in data.decode().splitlines() if line.strip()])


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def files_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(f["file"]).name: f for f in document["files"]}


def test_submit_wait_scores_good_files_and_reports_bad_ones(stack: StackEndpoints, tmp_path: Path) -> None:
    good_csv = write(tmp_path, "good.csv", sample_bytes(40, "csv", seed=1))
    good_jsonl = write(tmp_path, "good.jsonl.gz", sample_bytes(30, "jsonl", seed=2, compress=True))
    # big enough that the scored output travels through the results container, not inline
    big = write(tmp_path, "big.csv", sample_bytes(4000, "csv", seed=3))
    some_bad = write(tmp_path, "some-bad.csv", sample_bytes(20, "csv", seed=4, bad="some-bad-rows"))
    missing = write(tmp_path, "missing.csv", sample_bytes(10, "csv", seed=5, bad="missing-column"))
    session = f"e2e-cli-{uuid.uuid4().hex[:8]}"
    out_dir = tmp_path / "out"
    files = [good_csv, good_jsonl, big, some_bad, missing]
    done = cli(
        stack, "submit", *map(str, files), "--wait", "--json", "--session", session,
        "--prefix", session, "--out", str(out_dir), "--timeout", WAIT_SECONDS,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # missing.csv fails, the rest succeed
    document = json.loads(done.stdout)
    by_name = files_by_name(document)
    assert {n: f["status"] for n, f in by_name.items()} == {
        "good.csv": "succeeded",
        "good.jsonl.gz": "succeeded",
        "big.csv": "succeeded",
        "some-bad.csv": "succeeded",
        "missing.csv": "failed",
    }

    scored = csv_rows((out_dir / "good.csv").read_bytes())
    source = csv_rows(good_csv.read_bytes())
    assert len(scored) == len(source) == 40
    assert list(scored[0]) == [*source[0], PREDICTION_COLUMN, PROBABILITY_COLUMN]
    model = reference_model()
    assert model.check_csv(good_csv.read_bytes(), (out_dir / "good.csv").read_bytes()) == []

    lines = gzip.decompress((out_dir / "good.jsonl.gz").read_bytes()).decode().splitlines()
    scored_records = [json.loads(line) for line in lines if line.strip()]
    assert len(scored_records) == 30
    assert model.check_rows(jsonl_frame(gzip.decompress(good_jsonl.read_bytes())), scored_records) == []

    big_out = (out_dir / "big.csv").read_bytes()
    assert len(big_out) > INLINE_OUTPUT_MAX_BYTES
    assert model.check_csv(big.read_bytes(), big_out) == []

    partial = by_name["some-bad.csv"]
    assert partial["rows_failed"] == 3 and partial["rows_scored"] == 17
    assert sorted(e["row"] for e in partial["row_errors"]) == [2, 5, 9]
    assert len(csv_rows((out_dir / "some-bad.csv").read_bytes())) == 17

    failure = by_name["missing.csv"]
    assert failure["error"]["code"] == "missing_columns" and "Contract" in failure["error"]["message"]
    assert not (out_dir / "missing.csv").exists()

    # The function app's ledger agrees, through the watch and status commands. The client's copy of a result
    # can arrive before the writer has recorded it, so watch (which waits for terminal states) goes first.
    ids = [by_name["good.csv"]["request_id"], by_name["missing.csv"]["request_id"]]
    watch = cli(stack, "watch", *ids, "--timeout", "60", "--json")
    assert watch.returncode == 1, watch.stderr
    assert [r["state"] for r in json.loads(watch.stdout)["requests"]] == ["succeeded", "failed"]
    status = cli(stack, "status", ids[0])
    assert status.returncode == 0 and f"{ids[0]}: succeeded" in status.stdout, status.stderr
    failed = cli(stack, "status", ids[1], "--json")
    assert failed.returncode == 1 and json.loads(failed.stdout)["state"] == "failed"


def test_submit_wait_text_mode_exits_0_when_all_succeed(stack: StackEndpoints, tmp_path: Path) -> None:
    source = write(tmp_path, "customers.csv", sample_bytes(15, "csv", seed=7))
    session = f"e2e-cli-{uuid.uuid4().hex[:8]}"
    done = cli(stack, "submit", str(source), "--wait", "--prefix", session, "--timeout", WAIT_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 succeeded" in done.stdout and "15 rows scored" in done.stdout
    assert len(csv_rows((tmp_path / "customers.scored.csv").read_bytes())) == 15


def test_score_sync_prints_predictions_and_rejects_bad_rows(stack: StackEndpoints, tmp_path: Path) -> None:
    source = write(tmp_path, "few.csv", sample_bytes(5, "csv", seed=8))
    table = cli(stack, "score", str(source))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["row", "customerID", "prediction"]
    assert "5 scored, 0 failed" in table.stdout

    as_json = cli(stack, "score", str(source), "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)["rows"]
    assert reference_model().check_rows(pd.read_csv(source), rows) == []

    bad = write(tmp_path, "bad.csv", sample_bytes(10, "csv", seed=9, bad="some-bad-rows"))
    rejected = cli(stack, "score", str(bad))
    assert rejected.returncode == 1
    assert "rejected the request (400)" in rejected.stderr and "row 2:" in rejected.stderr
