"""One dropped file gives one trace across the function app, the local host and the scoring server, read back
from the telemetry the stack keeps on disk (``<base dir>/telemetry/spans-*.jsonl``) and from the service logs;
a request that ``reconcile`` publishes again stays in that trace."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from scoring.examples.churn.data import generate
from shared.contracts import derive_request_id, output_blob_name
from tests.e2e.test_pipeline_e2e import wait_for_blob
from tests.fixtures.stack import StackEndpoints, own_stack

pytestmark = pytest.mark.slow

T = TypeVar("T")

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
    """All spans of the trace whose submit span names ``request_id``, once every stage's span is there (each
    process exports its spans on its own schedule, so the writer's may be on disk before the scoring job's)."""
    while True:
        spans = spans_of(telemetry)
        roots = [s for s in spans if s["attributes"].get("inference.request_id") == request_id
                 and s["attributes"].get("pipeline.stage") == "submit"]  # fmt: skip
        if roots:
            trace_id = roots[0]["context"]["trace_id"]
            in_trace = [s for s in spans if s["context"]["trace_id"] == trace_id]
            if set(STAGES) <= {s["attributes"].get("pipeline.stage") for s in in_trace}:
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


# The scoring service is not started at first: score_request backs off (quickly, without giving up) and the
# request is overdue after a minute, which a reconcile run every 5 s notices.
OVERDUE_SETTINGS = {
    "RESULT_DEADLINE_MINUTES": "1",
    "RECONCILE_SCHEDULE": "*/5 * * * * *",
    "SCORING_RETRY_BASE_SECONDS": "1",
    "SCORING_RETRY_MAX_SECONDS": "5",
    "SCORING_MAX_RETRIES": "1000",
    "SCORING_CONNECT_TIMEOUT_SECONDS": "2",
}


def wait_for(probe: Callable[[], T | None], what: str, log: Path, timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout:.0f}s; functions log:\n{log.read_text(errors='replace')[-4000:]}")


def test_a_request_reconcile_resubmits_stays_in_the_files_trace(tmp_path: Path) -> None:
    with own_stack(tmp_path / "stack", OVERDUE_SETTINGS, ["azurite", "servicebus", "functions"]) as local:
        log = local.log_path("functions")
        name = f"overdue/{uuid.uuid4().hex[:8]}/customers.csv"
        with BlobServiceClient.from_connection_string(local.settings.storage_connection_string) as service:
            data = generate(20, seed=8, label=False).to_csv(index=False).encode()
            etag = service.get_container_client("input").upload_blob(name, data).get_blob_properties().etag
            request_id = derive_request_id("input", name, etag)
            record_blob = service.get_blob_client("ledger", f"requests/{request_id}.json")

            def resubmitted() -> dict[str, Any] | None:
                try:
                    record: dict[str, Any] = json.loads(record_blob.download_blob().readall())
                except ResourceNotFoundError:
                    return None
                return record if record["attempt"] >= 2 else None

            record = wait_for(resubmitted, "reconcile did not resubmit the overdue request", log, timeout=180)
            assert record["state"] == "submitted" and record["traceparent"], record
            local.up(["scoring"])
            output = service.get_container_client("output")
            wait_for_blob(output, [output_blob_name(name)], local.settings.log_dir)

        spans = trace_of(local.settings.base_dir / "telemetry", request_id, time.monotonic() + 60)
        trace_id = spans[0]["context"]["trace_id"]
        assert record["traceparent"].split("-")[1] == trace_id.removeprefix("0x")
        stages = [(s["attributes"].get("pipeline.stage"), s["attributes"].get("inference.attempt")) for s in spans]
        reconciles = [s for s in spans if s["attributes"].get("pipeline.stage") == "reconcile"]
        assert reconciles, stages
        first = reconciles[0]["attributes"]
        assert (first["inference.request_id"], first["inference.attempt"], first["inference.reason"]) == (
            request_id, 2, "result_overdue"
        ), first  # fmt: skip
        # The later attempt went all the way through in the same trace: accepted, scored and written.
        scored = [s for s in spans if s["attributes"].get("pipeline.stage") == "score"]
        assert [s["attributes"]["inference.attempt"] for s in scored] == [record["attempt"]], stages
        written = [s for s in spans if s["attributes"].get("pipeline.stage") == "write"]
        assert [s["attributes"]["inference.outcome"] for s in written] == ["written"], stages
        resubmitted_requests = [s for s in spans if s["attributes"].get("pipeline.stage") == "score_request"
                                and s["attributes"].get("inference.attempt", 0) >= 2]  # fmt: skip
        assert resubmitted_requests, stages
        # Reconcile's lines about the request carry its id and the file's trace id.
        hex_id = trace_id.removeprefix("0x")
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if " shared.reconcile " in line and "resubmitted as attempt" in line]  # fmt: skip
        assert lines, "no reconcile line about the resubmission"
        assert all(f"trace={hex_id} request={request_id}]" in line for line in lines), lines
        # The local host's lines about the resubmitted message name the request too.
        executed = [line for line in log.read_text(errors="replace").splitlines()
                    if "Executed 'Functions.score_request'" in line and f"trace={hex_id}" in line]  # fmt: skip
        assert executed and all(f"request={request_id}]" in line for line in executed), executed[:3]
