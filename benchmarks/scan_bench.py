"""How the local functions host's blob listing scales with the size of the input container.

Without an access log to follow, the local host finds new blobs by listing the whole container
(``devstack/functions_host/blob_listing.py``) and pausing ``max(poll interval, 2 x the scan's time)`` between
listings (``blob_trigger.py``), so the time to find a new blob grows with the container; with Azurite's access
log it lists only as a safety net (``access_log.py``), and this measures what each such listing costs. This
benchmark runs Azurite alone, fills container ``input`` step by step, and at each size measures:

* one full listing with the host's own lister: wall time, and Azurite's and the lister's CPU seconds;
* drop -> seen: a scanner thread that lists and pauses as the host does, while new blobs with random names
  (so they land anywhere in the name order) are uploaded one at a time at random moments.

    python -m benchmarks.scan_bench [--sizes 0 1000 5000 10000] [--drops 10]

Results go to ``benchmarks/results/scan.json``.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient, ContainerClient

from benchmarks.figures import save
from devstack.functions_host.blob_listing import ContainerLister
from devstack.stack import BLOB_POLL_SECONDS, LocalStack
from tests.support.flow import REPO, cpu_seconds, isolated_settings, load_average

logger = logging.getLogger(__name__)

RESULTS = REPO / "benchmarks" / "results" / "scan.json"
CONTAINER = "input"
BODY = b"customer_id,tenure\n1,2\n"


def fill(connection_string: str, start: int, stop: int, threads: int = 8) -> None:
    """Uploads blobs ``fill/<i>.csv`` for i in [start, stop), one client per thread."""

    def upload(chunk: range) -> None:
        with ContainerClient.from_connection_string(connection_string, CONTAINER) as container:
            for i in chunk:
                container.upload_blob(f"fill/{i:07d}.csv", BODY, overwrite=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(upload, [range(start + k, stop, threads) for k in range(threads)]))


def full_listing(container: ContainerClient, stack: LocalStack, repeat: int = 5) -> dict[str, float]:
    walls, azurite_cpu, own_cpu, count = [], [], [], 0
    lister = ContainerLister(container)
    try:
        for _ in range(repeat):
            before, own = cpu_seconds(stack)["azurite"], time.process_time()
            started = time.perf_counter()
            count = sum(1 for _ in lister)
            walls.append(time.perf_counter() - started)
            own_cpu.append(time.process_time() - own)
            azurite_cpu.append(cpu_seconds(stack)["azurite"] - before)
    finally:
        lister.close()
    return {
        "blobs_listed": count,
        "wall_ms_p50": statistics.median(walls) * 1000,
        "azurite_cpu_ms_p50": statistics.median(azurite_cpu) * 1000,
        "lister_cpu_ms_p50": statistics.median(own_cpu) * 1000,
    }


class Scanner:
    """Lists the container again and again, pausing as the host's blob trigger does; notes when names appear."""

    def __init__(self, container: ContainerClient, poll_interval: float) -> None:
        self._lister = ContainerLister(container)
        self._poll = poll_interval
        self._stop = threading.Event()
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="scan-bench", daemon=True)

    def __enter__(self) -> Scanner:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        self._lister.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for name, _etag in self._lister:
                if name.startswith("new/"):
                    with self._lock:
                        self._seen.setdefault(name, time.monotonic())
            self._stop.wait(max(self._poll, 2 * (time.monotonic() - started)))

    def seen_at(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if name in self._seen:
                    return self._seen[name]
            time.sleep(0.005)
        raise RuntimeError(f"{name}: not listed after {timeout:.0f} s")


def drop_to_seen(container: ContainerClient, drops: int, rng: random.Random) -> dict[str, float]:
    latencies = []
    with Scanner(container, BLOB_POLL_SECONDS) as scanner:
        for _ in range(drops):
            time.sleep(rng.uniform(0.0, 1.0))  # a random phase of the scan cycle
            name = f"new/{uuid.UUID(int=rng.getrandbits(128)).hex}.csv"
            container.upload_blob(name, BODY)
            dropped = time.monotonic()
            latencies.append((scanner.seen_at(name, 120) - dropped) * 1000)
            container.delete_blob(name)  # the container keeps the size being measured
    ordered = sorted(latencies)
    return {
        "drops": drops,
        "p50_ms": statistics.median(latencies),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)],
        "max_ms": ordered[-1],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="scan-bench-"))
    stack = LocalStack(isolated_settings(base), report=lambda line: logger.info("%s", line))
    rng = random.Random(18)
    figures: dict[str, Any] = {"load_avg_before": load_average(), "poll_interval_s": BLOB_POLL_SECONDS, "sizes": []}
    try:
        stack.up(["azurite"])
        connection = stack.settings.storage_connection_string
        with BlobServiceClient.from_connection_string(connection) as service:
            container = service.get_container_client(CONTAINER)
            filled = 0
            for size in sorted(args.sizes):
                started = time.monotonic()
                fill(connection, filled, size)
                fill_s = time.monotonic() - started
                step = {"container_blobs": size, "fill_per_s": (size - filled) / fill_s if size > filled else None}
                filled = max(filled, size)
                step["full_listing"] = full_listing(container, stack)
                step["drop_to_seen"] = drop_to_seen(container, args.drops, rng)
                figures["sizes"].append(step)
                print(line(step), flush=True)
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)
    figures["load_avg_after"] = load_average()
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


def line(step: dict[str, Any]) -> str:
    listing, seen = step["full_listing"], step["drop_to_seen"]
    return (
        f"{step['container_blobs']:>7,} blobs: listing {listing['wall_ms_p50']:,.0f} ms"
        f" (Azurite CPU {listing['azurite_cpu_ms_p50']:,.0f} ms, lister CPU {listing['lister_cpu_ms_p50']:,.0f} ms);"
        f" drop -> seen p50 {seen['p50_ms']:,.0f} / p95 {seen['p95_ms']:,.0f} / max {seen['max_ms']:,.0f} ms"
        f" (n={seen['drops']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scan_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 5000, 10000])
    parser.add_argument("--drops", type=int, default=10, help="new blobs timed at each size")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    figures = run(args)
    save(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
