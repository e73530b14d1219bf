"""One dropped file gives one trace across the function app, the local host and the scoring server, read back
from the telemetry the stack keeps on disk (``<base dir>/telemetry/spans-*.jsonl``) and from the service logs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from scoring.examples.churn.data import generate
from shared.contracts import derive_request_id, output_blob_name
from tests.e2e.test_pipeline_e2e import wait_for_blob
from tests.fixtures.stack import StackEndpoints

pytestmark = pytest.mark.slow

STAGES = ["submit", "score_request", "accept", "score", "write"]
SCORING_STAGES = ["download", "parse+validate", "predict", "upload", "publish"]


def spans_of(telemetry: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(telemetry.glob("spans-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                spans.append(json.loads(line))
    return spans


def trace_of(telemetry: Path, request_id: str, deadline: float) -> list[dict[str, Any]]:
    """All spans of the trace whose submit span names ``request_id``, once the writer's span is there."""
    while True:
        spans = spans_of(telemetry)
        roots = [s for s in spans if s["attributes"].get("inference.request_id") == request_id
                 and s["attributes"].get("pipeline.stage") == "submit"]  # fmt: skip
        if roots:
            trace_id = roots[0]["context"]["trace_id"]
            in_trace = [s for s in spans if s["context"]["trace_id"] == trace_id]
            if any(s["attributes"].get("pipeline.stage") == "write" for s in in_trace):
                return in_trace
        if time.monotonic() > deadline:
            pytest.fail(f"no complete trace for request {request_id} in {telemetry}: {len(spans)} spans on disk")
        time.sleep(0.5)


def test_one_file_one_trace_across_every_hop(stack: StackEndpoints, blobs: BlobServiceClient) -> None:
    name = f"trace/{uuid.uuid4().hex[:8]}/customers.csv"
    blob = blobs.get_container_client("input").upload_blob(
        name, generate(30, seed=5, label=False).to_csv(index=False).encode(), metadata={"session_id": "trace-e2e"}
    )
    etag = blob.get_blob_properties().etag
    wait_for_blob(blobs.get_container_client("output"), [output_blob_name(name)], stack.log_dir)
    request_id = derive_request_id("input", name, etag)

    spans = trace_of(stack.base_dir / "telemetry", request_id, time.monotonic() + 60)
    trace_id = spans[0]["context"]["trace_id"]
    by_stage = {s["attributes"]["pipeline.stage"]: s for s in spans if "pipeline.stage" in s["attributes"]}
    assert sorted(by_stage) == sorted(STAGES), sorted(by_stage)
    starts = [by_stage[stage]["start_time"] for stage in STAGES]
    assert starts == sorted(starts), list(zip(STAGES, starts, strict=True))
    # Every stage span names the request; the endpoint answered 202 and the writer wrote the output.
    for stage in STAGES:
        assert by_stage[stage]["attributes"]["inference.request_id"] == request_id, stage
    assert by_stage["accept"]["attributes"]["http.response.status_code"] == 202
    assert by_stage["write"]["attributes"]["inference.outcome"] == "written"
    assert by_stage["score"]["attributes"]["inference.rows"] == 30
    assert by_stage["submit"]["parent_id"] is None
    client_calls = [s for s in spans if s["name"] == "POST score"]
    assert [s["attributes"]["http.response.status_code"] for s in client_calls] == [202]
    # The scoring job's own stages sit under its span.
    job_span_id = by_stage["score"]["context"]["span_id"]
    children = {s["name"] for s in spans if s["parent_id"] == job_span_id}
    assert set(SCORING_STAGES) <= children, children
    # The host's spans for the two Service Bus invocations are in the same trace.
    assert {"Invoke score_request", "Invoke write_result"} <= {s["name"] for s in spans}
    # Log lines of the function app, the local host and the scoring server carry the same trace id.
    hex_id = trace_id.removeprefix("0x")
    functions_log = (stack.log_dir / "functions.log").read_text(encoding="utf-8", errors="replace")
    scoring_log = (stack.log_dir / "scoring.log").read_text(encoding="utf-8", errors="replace")
    tagged = [line for line in functions_log.splitlines() if f"trace={hex_id}" in line]
    assert any(" devstack.functions_host." in line and "Executed 'Functions.score_request'" in line for line in tagged)
    assert any(" shared." in line and f"request={request_id}" in line for line in tagged)
    assert any(f"trace={hex_id}" in line and f"request={request_id}" in line for line in scoring_log.splitlines())


def test_metrics_reach_the_on_disk_exporter(stack: StackEndpoints, blobs: BlobServiceClient) -> None:
    """The file counters, the endpoint's answers and the Service Bus depths (from the administration client) are
    exported; the stack exports every 10 s."""
    name = f"metrics/{uuid.uuid4().hex[:8]}/customers.csv"
    blobs.get_container_client("input").upload_blob(name, generate(5, seed=6, label=False).to_csv(index=False).encode())
    wait_for_blob(blobs.get_container_client("output"), [output_blob_name(name)], stack.log_dir)
    wanted = {"inference.files.submitted", "inference.files.scored", "inference.rows.scored",
              "inference.file.duration", "inference.endpoint.responses",
              "servicebus.subscription.active_messages", "servicebus.subscription.dead_lettered_messages"}  # fmt: skip
    deadline = time.monotonic() + 45
    while True:
        found = set()
        for path in (stack.base_dir / "telemetry").glob("metrics-*.jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                for resource in json.loads(line)["resource_metrics"]:
                    for scope in resource["scope_metrics"]:
                        found.update(metric["name"] for metric in scope["metrics"])
        if wanted <= found:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"metrics never exported: {sorted(wanted - found)}")
        time.sleep(1)
