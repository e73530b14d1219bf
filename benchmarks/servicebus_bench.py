"""Throughput of the local Service Bus emulator, driven by the real azure-servicebus SDK.

Starts ``python -m devstack.servicebus`` as a separate process (temporary data folder, one queue, a free loopback
port). One producer sends 1 KB messages in batches of 100 (``create_message_batch``); then one consumer receives
them in peek-lock mode with prefetch and completes each. Each phase is timed after a warm-up that opens the links.
The table shows messages per second against the goals, the CPU the emulator and this client used (as a share of
one core), where the client's wall time went, and baselines measured in the same run: how fast this client
builds the same batches without sending them (the ceiling for any server), and a repeat of both phases whose
consumer receives in receive-and-delete mode, which shows what the per-message settlement round trips cost.

    python -m benchmarks.servicebus_bench [--messages N] [--profile FILE]

Results go to ``benchmarks/results/servicebus.json``. ``--profile`` runs the emulator under cProfile and prints
its busiest functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusMessageBatch, ServiceBusReceiveMode
from azure.servicebus.management import ServiceBusAdministrationClient

from devstack.ports import LOOPBACK, free_port

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "servicebus.json"
QUEUE = "bench"
KEY_NAME, KEY = "RootManageSharedAccessKey", "SAS_KEY_VALUE"
READY_MARKER = b"servicebus emulator ready"
SEND_GOAL, RECEIVE_GOAL = 5000.0, 2000.0  # messages per second on 2 cores
START_TIMEOUT, STALL_TIMEOUT = 30.0, 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    name: str
    messages: int
    seconds: float
    emulator_cpu: float  # CPU seconds
    client_cpu: float
    split: dict[str, float]  # client wall seconds per activity
    goal: float | None  # None for a reference phase

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def serial_ceiling(self) -> float:
        """Messages per second if client and emulator took turns on free cores: 1 / (their CPU per message).

        Sends wait for each batch's acknowledgement and completes for each message's outcome, so the two
        processes mostly take turns; on a busy machine this shows what the code costs apart from the wait for a core.
        """
        return self.messages / (self.emulator_cpu + self.client_cpu)

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds": round(self.seconds, 3),
            "emulator_cpu": round(self.emulator_cpu, 3),
            "client_cpu": round(self.client_cpu, 3),
            "msgs_per_s": round(self.rate, 1),
            "goal_ratio": round(self.rate / self.goal, 3) if self.goal else None,
            "emulator_cpu_share": round(self.emulator_cpu / self.seconds, 3),
            "client_cpu_share": round(self.client_cpu / self.seconds, 3),
            "emulator_cpu_us_per_msg": round(self.emulator_cpu / self.messages * 1e6, 1),
            "client_cpu_us_per_msg": round(self.client_cpu / self.messages * 1e6, 1),
            "serial_cpu_ceiling_msgs_per_s": round(self.serial_ceiling, 1),
        }


# Runs a module under cProfile timed by CPU, not wall, time: on a shared machine the wall clock also counts the
# moments the emulator waits for a core (it shows up as slow socket sends), which is not the emulator's cost.
_CPU_PROFILER = """
import cProfile, runpy, sys, time
out, module = sys.argv[1], sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
profiler = cProfile.Profile(time.process_time)
try:
    profiler.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profiler.dump_stats(out)
"""


class Emulator:
    """The emulator process; its output goes to a log file next to its data."""

    def __init__(self, workdir: Path, profile: Path | None) -> None:
        self.port = free_port()
        self.config = workdir / "bench-config.json"
        self.config.write_text(json.dumps(_bench_config()), encoding="utf-8")
        self.log = workdir / "emulator.log"
        profiler = [sys.executable, "-c", _CPU_PROFILER, str(profile)] if profile else [sys.executable, "-m"]
        self.data = workdir / "data"
        command = [
            *profiler, "devstack.servicebus", "--config", str(self.config), "--port", str(self.port),
            "--data", str(self.data), "--host", LOOPBACK, "--key-name", KEY_NAME, "--key", KEY,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start; its output:\n{self.tail()}")

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{LOOPBACK}:{self.port};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY};"
            "UseDevelopmentEmulator=true"
        )

    def cpu_seconds(self) -> float:
        """User + system CPU of the emulator process (all its threads) so far, from /proc."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15 of the line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("ab") as log:
            for line in self.proc.stdout:
                log.write(line)
                if READY_MARKER in line:
                    log.flush()
                    self._ready.set()


def _bench_config() -> dict[str, Any]:
    queue = {"Name": QUEUE, "Properties": {"LockDuration": "PT1M", "MaxDeliveryCount": 10}}
    return {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": [queue], "Topics": []}]}}


class ActivityTimer:
    """Wall time split by activity, plus totals of wall, client CPU and emulator CPU over a measured span."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.split: dict[str, float] = {}

    @contextmanager
    def activity(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.split[name] = self.split.get(name, 0.0) + time.perf_counter() - start

    def start(self) -> None:
        self.split.clear()
        self._wall, self._cpu, self._emulator_cpu = (
            time.perf_counter(),
            time.process_time(),
            self.emulator.cpu_seconds(),
        )

    def phase(self, name: str, messages: int, goal: float | None) -> Phase:
        wall = time.perf_counter() - self._wall
        return Phase(
            name, messages, wall, self.emulator.cpu_seconds() - self._emulator_cpu, time.process_time() - self._cpu,
            {k: round(v, 3) for k, v in self.split.items()}, goal,
        )  # fmt: skip


def produce(
    client: ServiceBusClient, clock: ActivityTimer, count: int, warmup: int, size: int, batch_size: int
) -> Phase:
    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    with client.get_queue_sender(QUEUE) as sender:
        _send(sender, clock, warmup, body, batch_size)
        clock.start()
        _send(sender, clock, count, body, batch_size)
        return clock.phase(f"send (batches of {batch_size})", count, SEND_GOAL)


def _send(sender: Any, clock: ActivityTimer, count: int, body: bytes, batch_size: int) -> None:
    remaining = count
    while remaining:
        with clock.activity("build batches"):
            batch = sender.create_message_batch()
            added = 0
            while added < min(batch_size, remaining):
                try:
                    batch.add_message(ServiceBusMessage(body))
                except ValueError:  # the batch is full: send what fits
                    if added == 0:
                        raise
                    break
                added += 1
        with clock.activity("send_messages"):
            sender.send_messages(batch)
        remaining -= added


def consume(client: ServiceBusClient, clock: ActivityTimer, args: argparse.Namespace, peek_lock: bool) -> Phase:
    mode = ServiceBusReceiveMode.PEEK_LOCK if peek_lock else ServiceBusReceiveMode.RECEIVE_AND_DELETE
    receiver = client.get_queue_receiver(QUEUE, receive_mode=mode, prefetch_count=args.prefetch, max_wait_time=5)
    with receiver:
        _receive(receiver, clock, args.warmup, args.size, args.max_message_count, peek_lock)
        clock.start()
        _receive(receiver, clock, args.messages, args.size, args.max_message_count, peek_lock)
        if peek_lock:
            return clock.phase("receive + complete", args.messages, RECEIVE_GOAL)
        return clock.phase("receive-and-delete (ref)", args.messages, None)


def _receive(
    receiver: Any, clock: ActivityTimer, count: int, size: int, max_message_count: int, complete: bool
) -> None:
    done = 0
    last_progress = time.monotonic()
    while done < count:
        with clock.activity("receive_messages"):
            messages = receiver.receive_messages(
                max_message_count=min(max_message_count, count - done), max_wait_time=5
            )
        if not messages:
            if time.monotonic() - last_progress > STALL_TIMEOUT:
                raise RuntimeError(f"received {done} of {count} messages, then nothing for {STALL_TIMEOUT:.0f} s")
            continue
        last_progress = time.monotonic()
        if len(b"".join(messages[0].body)) != size:
            raise RuntimeError(f"a received message has {len(b''.join(messages[0].body))} bytes, not {size}")
        if complete:
            with clock.activity("complete_message"):
                for message in messages:
                    receiver.complete_message(message)
        done += len(messages)


def client_baseline(count: int, size: int, batch_size: int) -> float:
    """Messages per second this client builds into batches with no server involved (the SDK's own ceiling)."""
    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    start = time.perf_counter()
    for _ in range(count // batch_size):
        batch = ServiceBusMessageBatch(max_size_in_bytes=1024 * 1024)
        for _ in range(batch_size):
            batch.add_message(ServiceBusMessage(body))
    return (count // batch_size) * batch_size / (time.perf_counter() - start)


def queue_is_empty(emulator: Emulator) -> bool:
    """No message left, active or dead-lettered: read through the administration client, as in Azure."""
    admin = ServiceBusAdministrationClient.from_connection_string(
        emulator.connection_string, connection_verify=str(emulator.data / "ca.pem")
    )
    with admin:
        props = admin.get_queue_runtime_properties(QUEUE)
    return props.total_message_count == 0


def _goal(phase: Phase) -> str:
    if phase.goal is None:
        return f"{'-':>8}{'-':>9}"
    return f"{phase.goal:>8,.0f}{phase.rate / phase.goal:>8.2f}x"


def report(phases: list[Phase], baseline: float, args: argparse.Namespace, empty: bool) -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [
        f"Service Bus emulator, real azure-servicebus SDK: {args.messages} messages of {args.size} B, "
        f"prefetch {args.prefetch}, max_message_count {args.max_message_count}",
        f"machine: {os.cpu_count()} CPUs, load average {load}; CPU shares are % of one core; serial CPU ceiling ="
        " msgs/s if the two processes took turns on free cores",
        "",
        f"{'':<24}{'':>9}{'':>8}{'':>9}{'':>9}{'CPU share':>22}{'CPU per message':>24}{'serial CPU':>12}",
        f"{'phase':<24}{'msgs/s':>9}{'goal':>8}{'vs goal':>9}{'seconds':>9}{'emulator':>11}{'client':>11}"
        f"{'emulator':>12}{'client':>12}{'ceiling':>12}",
    ]
    for p in phases:
        lines.append(
            f"{p.name:<24}{p.rate:>9,.0f}{_goal(p)}{p.seconds:>9.2f}"
            f"{p.emulator_cpu / p.seconds:>11.0%}{p.client_cpu / p.seconds:>11.0%}"
            f"{p.emulator_cpu / p.messages * 1e6:>9.0f} us{p.client_cpu / p.messages * 1e6:>9.0f} us"
            f"{p.serial_ceiling:>12,.0f}"
        )
    lines.append("")
    for p in phases:
        parts = ", ".join(f"{name} {seconds:.2f} s ({seconds / p.seconds:.0%})" for name, seconds in p.split.items())
        lines.append(f"client wall time, {p.name}: {parts}")
    send, receive, drain = phases[0], phases[1], phases[3]
    lines.append(
        f"baselines (same run): the client alone builds {baseline:,.0f} msgs/s of batches, sending reached "
        f"{send.rate / baseline:.1%} of that; receive + complete reached {receive.rate / drain.rate:.1%} of "
        "receive-and-delete"
    )
    lines.append(f"queue empty afterwards (administration client's runtime properties): {'yes' if empty else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servicebus_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per timed phase")
    parser.add_argument("--size", type=int, default=1024, help="body bytes per message")
    parser.add_argument("--batch", type=int, default=100, help="messages per send batch")
    parser.add_argument("--prefetch", type=int, default=300, help="receiver prefetch_count")
    parser.add_argument("--max-message-count", type=int, default=100, help="per receive_messages call")
    parser.add_argument("--warmup", type=int, default=200, help="untimed messages before each phase")
    parser.add_argument("--profile", type=Path, help="run the emulator under cProfile, write its stats here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.messages < 1 or args.batch < 1 or args.size < 1:
        parser.error("--messages, --batch and --size must be positive")
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        emulator = Emulator(Path(tmp), args.profile.resolve() if args.profile else None)
        try:
            clock = ActivityTimer(emulator)
            with ServiceBusClient.from_connection_string(emulator.connection_string) as producer:
                send = produce(producer, clock, args.messages, args.warmup, args.size, args.batch)
            with ServiceBusClient.from_connection_string(emulator.connection_string) as consumer:
                receive = consume(consumer, clock, args, peek_lock=True)
            # Reference: the same messages again, received without per-message settlement round trips.
            with ServiceBusClient.from_connection_string(emulator.connection_string) as producer:
                resend = produce(producer, clock, args.messages, args.warmup, args.size, args.batch)
                resend.name = "send (repeat)"
            with ServiceBusClient.from_connection_string(emulator.connection_string) as consumer:
                drain = consume(consumer, clock, args, peek_lock=False)
            empty = queue_is_empty(emulator)
        except Exception:
            print(f"emulator output (tail):\n{emulator.tail()}", file=sys.stderr)
            raise
        finally:
            emulator.stop()
    baseline = client_baseline(min(args.messages, 10_000), args.size, args.batch)
    phases = [send, receive, resend, drain]
    print(report(phases, baseline, args, empty))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "servicebus",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "profile")}
        | {"profiled": bool(args.profile)},
        "phases": [p.summary() for p in phases],
        "baseline": {"client_batch_build_msgs_per_s": round(baseline, 1)},
        "queue_empty_afterwards": empty,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    if args.profile:
        print(f"\nemulator profile ({args.profile}), by own time:")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    return 0 if empty else 1


if __name__ == "__main__":
    sys.exit(main())
