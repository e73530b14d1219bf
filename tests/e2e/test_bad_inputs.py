"""Every case of the bad-input corpus, dropped into the running stack, ends exactly as the corpus says.

Each file yields either a scored output (with at least the stated number of rows reported bad) or exactly
one error record carrying the stated code, never both; the stack's processes stay the same ones throughout
(no crash, no restart), and a good file dropped afterwards is still scored.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from devstack.stack import LocalStack
from scoring.examples.churn.data import generate
from shared.contracts import PREDICTION_COLUMN, PROBABILITY_COLUMN, derive_request_id
from tests.corpus.bad_inputs import Case, build_cases
from tests.fixtures.stack import E2E_MAX_INPUT_BYTES, StackEndpoints
from tests.support.flow import OutputWatcher, service_pids

pytestmark = pytest.mark.slow

CORPUS_TIMEOUT = 360.0


def ledger_record(stack: StackEndpoints, request_id: str) -> dict[str, object]:
    reply = requests.get(
        f"{stack.functions_url}/api/requests/{request_id}",
        headers={"x-functions-key": stack.functions_key or ""},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    record: dict[str, object] = reply.json()
    return record


def data_rows(name: str, data: bytes) -> list[str]:
    """JSON Lines: the non-blank lines; CSV: the records after the header (quoted newlines stay inside)."""
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig")
    if ".jsonl" in name or ".ndjson" in name:
        return [line for line in text.splitlines() if line.strip()]
    return [",".join(record) for record in csv.reader(io.StringIO(text, newline=""))][1:]


def check_scored(case: Case, watcher: OutputWatcher, stack: StackEndpoints, etag: str) -> list[str]:
    output = watcher.output(case.name)
    record = ledger_record(stack, derive_request_id("input", case.name, etag))
    problems = []
    if record.get("state") != "succeeded":
        problems.append(f"ledger state {record.get('state')!r}")
    rows_scored, rows_failed = int(str(record.get("rows_scored"))), int(str(record.get("rows_failed")))
    if rows_failed < case.expect.min_rows_failed:
        problems.append(f"{rows_failed} rows reported bad, expected at least {case.expect.min_rows_failed}")
    rows = data_rows(case.name, output)
    if len(rows) != rows_scored or rows_scored == 0:
        problems.append(f"output has {len(rows)} data rows, the ledger says {rows_scored} scored")
    if ".jsonl" in case.name or ".ndjson" in case.name:
        keys = set(json.loads(rows[0])) if rows else set()
        if not {PREDICTION_COLUMN, PROBABILITY_COLUMN} <= keys:
            problems.append(f"output objects lack prediction/probability: {sorted(keys)}")
    else:
        text = gzip.decompress(output) if case.name.endswith(".gz") else output
        header = text.decode("utf-8-sig").splitlines()[0]
        if not header.endswith(f",{PREDICTION_COLUMN},{PROBABILITY_COLUMN}"):
            problems.append(f"output header is {header[:200]!r}")
    return problems


def check_refused(case: Case, watcher: OutputWatcher) -> list[str]:
    record = watcher.error_record(case.name)
    code, message = record["error"]["code"], record["error"]["message"]
    allowed = {case.expect.code, *case.expect.also_ok}
    problems = []
    if code not in allowed:
        problems.append(f"error code {code!r} ({message}), expected {sorted(str(c) for c in allowed)}")
    if not message.strip():
        problems.append("the error record has no message")
    return problems


def test_every_corpus_case_ends_as_the_corpus_says(stack: StackEndpoints, blobs: BlobServiceClient) -> None:
    local = LocalStack(stack.settings)
    pids_before = service_pids(local)
    assert set(pids_before) == {"azurite", "servicebus", "scoring", "functions"}

    prefix = f"corpus-{uuid.uuid4().hex[:8]}/"
    cases = build_cases(size_limit=E2E_MAX_INPUT_BYTES, prefix=prefix)
    inputs = blobs.get_container_client("input")
    etags = {}
    for case in cases:
        etags[case.name] = inputs.get_blob_client(case.name).upload_blob(case.data, overwrite=True)["etag"]

    watcher = OutputWatcher(blobs.get_container_client("output"), [c.name for c in cases], [prefix, f"errors/{prefix}"])
    missing = watcher.wait([c.name for c in cases], timeout=CORPUS_TIMEOUT, interval=0.5)
    assert not missing, f"nothing after {CORPUS_TIMEOUT:.0f}s for {missing}; service logs: {stack.log_dir}"

    outcomes = watcher.poll()
    problems: dict[str, list[str]] = {}
    for case in cases:
        found = []
        if case.name in outcomes.outputs:
            found.append("output")
        if case.name in outcomes.errors:
            found.append("error record")
        if len(found) != 1:
            problems[case.name] = [f"found {' and '.join(found)}"]
        elif case.expect.scored and found == ["error record"]:
            record = watcher.error_record(case.name)
            if record["error"]["code"] not in case.expect.also_ok:
                problems[case.name] = [f"refused with {record['error']['code']}: {record['error']['message']}"]
        elif not case.expect.scored and found == ["output"]:
            problems[case.name] = [f"scored, expected error {case.expect.code}"]
        elif case.expect.scored:
            problems[case.name] = check_scored(case, watcher, stack, etags[case.name])
        else:
            problems[case.name] = check_refused(case, watcher)
    failures = {name: p for name, p in problems.items() if p}
    assert not failures, json.dumps(failures, indent=2, ensure_ascii=False)

    # Nothing crashed or restarted, and the stack still scores a good file.
    assert service_pids(local) == pids_before
    assert all(s.healthy for s in local.statuses()), local.statuses()
    after = f"{prefix}after/good.csv"
    frame = generate(10, seed=99, label=False)
    inputs.upload_blob(after, frame.to_csv(index=False).encode(), overwrite=True)
    later = OutputWatcher(blobs.get_container_client("output"), [after], [prefix, f"errors/{prefix}"])
    assert not later.wait([after], timeout=120, interval=0.5)
    assert after in later.poll().outputs and after not in later.outcomes.errors
    assert len(data_rows(after, later.output(after))) == len(frame)
