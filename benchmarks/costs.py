"""What each file costs the local stack, counted where the work is served, for the pipeline benchmark.

* storage operations: Azurite's own access log (one line per request, ``--silent`` left off by
  ``StackSettings.storage_access_log``), by container and REST operation, as Azure bills them; the
  functions host's own receipts are counted with the rest (they are requests to the same Azurite), and the
  host's timed work, which does not grow with the files (:data:`HOST_TIMED`), is also given on its own; the
  benchmark's own uploads and output listings are shown apart (:data:`BENCH_OWN`);
* Service Bus operations: the emulator's counts (``operations.json`` in its data directory, written at
  most once a second: :mod:`devstack.servicebus.opcounts`);
* endpoint calls: the lines the AML inference server logs for each request it answered (``POST /score 202``);
* CPU seconds of each service's process tree (user + system, from /proc).

A :class:`CostMeter` takes a snapshot before a phase and turns the difference after it into figures per file,
once :meth:`CostMeter.settled` says every message of the phase was completed and every request is in the logs.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from devstack.functions_host.access_log import ACCESS_LINE
from devstack.servicebus.opcounts import read_operations
from devstack.stack import LocalStack
from tests.support.flow import cpu_seconds
from tests.support.wait import wait_until

# morgan's "common" format, as the functions host reads it too
_ACCESS = ACCESS_LINE
# azureml-inference-server-http logs "<method> <path> <status> <ms>ms <length>" after each request it routes
_ENDPOINT = re.compile(r"\b(?P<method>GET|POST) (?P<path>/score\S*) (?P<status>\d{3}) [\d.]+ms")
_SERVED_FROM = "azurite"
# Requests the benchmark itself makes: its uploads and its listings of the output container (the pipeline
# never lists ``output``); counted and shown, but not in the pipeline's operations per file.
# The marker request :meth:`CostMeter.settled` sends (to a container that does not exist) is the benchmark's too.
MARKER_CONTAINER = "cost-meter-marker"
BENCH_OWN = frozenset({"input: Put/Copy Blob", "output: List Blobs", f"{MARKER_CONTAINER}: GET Container"})
# Requests the functions host makes on a timer rather than per file: with the EventGrid source the receipt
# journal's checkpoint (every few seconds while files settle), and the safety-net listings of the input container.
_CHECKPOINTS = "azure-webjobs-hosts/eventgrid-checkpoints"
HOST_TIMED = frozenset({f"{_CHECKPOINTS}: Put/Copy Blob", "input: List Blobs"})


def storage_operation(method: str, url: str) -> str:
    """``container: REST operation`` of one request, e.g. ``ledger: Put Blob`` (queue/table paths name theirs)."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    where = segments[1].split("(", 1)[0] if len(segments) > 1 else "(account)"
    if "/".join(segments[1:3]) == _CHECKPOINTS:
        where = _CHECKPOINTS
    query = parse_qs(parts.query)
    comp, restype = query.get("comp", [""])[0], query.get("restype", [""])[0]
    if restype == "container":
        kind = {"list": "List Blobs", "": f"{method} Container"}.get(comp, f"{method} Container {comp}")
    elif comp:
        kind = {
            "block": "Put Block",
            "blocklist": "Put Block List",
            "metadata": "Set Blob Metadata",
            "properties": "Set Blob Properties",
            "lease": "Lease Blob",
            "tags": "Blob Tags",
        }.get(comp, f"{method} {comp}")
    else:
        # a PUT without comp is Put Blob or Copy Blob (told apart by a header the access log does not show)
        kind = {"GET": "Get Blob", "HEAD": "Get Blob Properties", "PUT": "Put/Copy Blob", "DELETE": "Delete Blob"}
        kind = kind.get(method, method)  # type: ignore[assignment]
    return f"{where}: {kind}"


def storage_operations(log_text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for match in _ACCESS.finditer(log_text):
        operation = storage_operation(match["method"], match["url"])
        counts[operation] += 1
        if match["status"][0] in "45":
            counts[f"{operation} -> {match['status']}"] += 1
    return counts


def pipeline_requests(counts: Counter[str]) -> tuple[int, int]:
    """The pipeline's storage requests among ``counts`` (the benchmark's own apart), and how many of them are the
    host's timed ones (:data:`HOST_TIMED`)."""
    total = sum(n for kind, n in counts.items() if " -> " not in kind and kind not in BENCH_OWN)
    return total, sum(n for kind, n in counts.items() if kind in HOST_TIMED)


def endpoint_calls(log_text: str) -> Counter[str]:
    return Counter(f"{m['method']} {m['path'].split('?', 1)[0]} {m['status']}" for m in _ENDPOINT.finditer(log_text))


@dataclass(frozen=True)
class CostSnapshot:
    log_offsets: dict[str, int]
    servicebus: dict[str, int]
    cpu: dict[str, float]


class CostMeter:
    """Counts of one stack between two snapshots; the stack must run with ``storage_access_log``."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.logs = {name: stack.log_path(name) for name in stack.names if name == _SERVED_FROM or "scoring" in name}

    def snapshot(self) -> CostSnapshot:
        offsets = {name: _size(path) for name, path in self.logs.items()}
        return CostSnapshot(offsets, read_operations(self.stack.settings.servicebus_data_dir), cpu_seconds(self.stack))

    def settled(self, before: CostSnapshot, completes: int, timeout: float) -> bool:
        """Waits until the emulator counted ``completes`` more completed messages than at ``before`` (each file's
        request and result: the writer completes its result after its last storage request), then until Azurite's
        log shows a request made after that, so the lines of every request answered before it are there too
        (Azurite logs each request as it answers it). False if the messages were not all completed in time."""
        data_dir = self.stack.settings.servicebus_data_dir
        already = before.servicebus.get("settle complete", 0)
        try:
            wait_until(lambda: read_operations(data_dir).get("settle complete", 0) - already >= completes, timeout,
                       f"{completes} messages completed", interval=0.1)  # fmt: skip
            done = True
        except AssertionError:
            done = False
        self.logged()
        return done

    def logged(self) -> None:
        """Waits until Azurite's log shows a request made now, and so every request answered before."""
        log = self.stack.log_path(_SERVED_FROM)
        start, mark = _size(log), uuid.uuid4().hex
        # Unsigned: Azurite refuses it, and logs it like any other request.
        requests.get(f"{self.stack.settings.blob_endpoint}/{MARKER_CONTAINER}",
                     params={"restype": "container", "mark": mark}, timeout=30)  # fmt: skip
        wait_until(lambda: mark in _read_from(log, start, _size(log)), 30, "the marker request in Azurite's log")

    def per_file(self, before: CostSnapshot, files: int) -> dict[str, Any]:
        """Operations and CPU seconds since ``before``, divided by ``files``; totals under ``"totals"``.

        The emulator writes its counts at most once a second: call this a second or more after the phase ends.
        """
        after = self.snapshot()
        storage: Counter[str] = Counter()
        endpoint: Counter[str] = Counter()
        for name, path in self.logs.items():
            text = _read_from(path, before.log_offsets.get(name, 0), after.log_offsets[name])
            if name == _SERVED_FROM:
                storage += storage_operations(text)
            else:
                endpoint += endpoint_calls(text)
        servicebus = Counter(after.servicebus)
        servicebus.subtract(before.servicebus)
        cpu = {name: seconds - before.cpu.get(name, 0.0) for name, seconds in after.cpu.items()}
        storage_total, timed = pipeline_requests(storage)
        requests = sum(n for kind, n in servicebus.items() if kind.startswith("request "))
        return {
            "files": files,
            "storage_ops": storage_total / files,
            "storage_ops_timed": timed / files,
            "servicebus_requests": requests / files,
            "endpoint_calls": sum(endpoint.values()) / files,
            "cpu_s": {name: seconds / files for name, seconds in cpu.items()},
            "cpu_s_all": sum(cpu.values()) / files,
            "totals": {
                "storage": dict(storage.most_common()),
                "servicebus": {k: v for k, v in sorted(servicebus.items()) if v},
                "endpoint": dict(endpoint),
                "cpu_s": cpu,
            },
        }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, start: int, end: int) -> str:
    with path.open("rb") as log:
        log.seek(start)
        return log.read(max(0, end - start)).decode("utf-8", "replace")


def cost_lines(label: str, cost: dict[str, Any]) -> list[str]:
    """A few printable lines: per-file figures, then the operations behind them."""
    cpu = ", ".join(f"{name} {seconds * 1000:,.0f} ms" for name, seconds in cost["cpu_s"].items())
    totals = cost["totals"]
    return [
        f"{label}: per file {cost['storage_ops']:.1f} storage ops ({_timed(cost)}uploads and the benchmark's"
        " listings apart),"
        f" {cost['servicebus_requests']:.1f} Service Bus"
        f" requests, {cost['endpoint_calls']:.2f} endpoint calls, CPU {cost['cpu_s_all'] * 1000:,.0f} ms ({cpu})",
        "  storage ops (all files): " + ", ".join(f"{k} {v}" for k, v in totals["storage"].items()),
        "  Service Bus (all files): " + ", ".join(f"{k} {v}" for k, v in totals["servicebus"].items()),
        "  endpoint (all files): " + ", ".join(f"{k} {v}" for k, v in totals["endpoint"].items()),
    ]


def _timed(cost: dict[str, Any]) -> str:
    if "storage_ops_timed" not in cost:  # figures of runs before it was counted
        return ""
    timed = cost["storage_ops_timed"]
    return f"{cost['storage_ops'] - timed:.2f} for the files and {timed:.2f} the host's timed requests; "
