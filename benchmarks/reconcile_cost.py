"""What ``reconcile`` costs the storage account for each file, for the pipeline benchmark.

A phase of the benchmark ends long before ``RESULT_DEADLINE_MINUTES`` pass, so the work ``reconcile`` does for each
file a deadline later (checking a success's output, clearing its record's in-flight mark) is not in the phase's own
count. :func:`reconcile_pass` runs the real use case (:func:`shared.reconcile.reconcile`) in the benchmark's process,
against the stack's own storage and Service Bus with the app settings the functions host runs with, at a time moved
past the deadline, and counts the storage operations it caused from Azurite's access log, by kind. The same pass at
the real time (nothing is due) is what every timer run costs: the listing of the ledger's records.

Operations are counted from Azurite's log, which also holds whatever the idle functions host asks meanwhile (its
safety-net listing of ``input`` every 30 s, its own reconcile timer); only the containers ``reconcile`` touches are
counted (the ledger and the output container).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.costs import CostMeter
from devstack.functions_host.settings import load_local_settings
from devstack.stack import LocalStack
from shared.reconcile import reconcile
from shared.settings import load_settings
from shared.wiring import services

PAST_DEADLINE = timedelta(minutes=1)  # beyond RESULT_DEADLINE_MINUTES, so every mark of the pass is due


def app_settings(stack: LocalStack) -> dict[str, str]:
    """The function app's settings as the local host merges them: local.settings.json, then the stack's own."""
    return {**load_local_settings(stack.settings.repo), **stack.settings.function_app_settings()}


def reconcile_pass(stack: LocalStack, *, files: int, past_deadline: bool) -> dict[str, Any]:
    """One reconcile pass over the stack's ledger and its storage operations (``files``: what they are divided by)."""
    env = app_settings(stack)
    settings = load_settings(env)
    svc = services(settings=settings)
    now = datetime.now(UTC)
    if past_deadline:
        now += timedelta(minutes=settings.result_deadline_minutes) + PAST_DEADLINE
    meter = CostMeter(stack)
    before = meter.snapshot()
    started = time.monotonic()
    report = reconcile(settings=settings, blobs=svc.blobs, bus=svc.bus, ledger=svc.ledger, now=now)
    seconds = time.monotonic() - started
    meter.logged()
    totals = meter.per_file(before, 1)["totals"]["storage"]
    touched = (f"{settings.ledger_container}: ", f"{settings.output_container}: ")
    counted = {kind: n for kind, n in totals.items() if kind.startswith(touched)}
    operations = sum(n for kind, n in counted.items() if " -> " not in kind)
    return {
        "files": files,
        "past_deadline": past_deadline,
        "records": sum(1 for _ in svc.blobs.list(settings.ledger_container, "requests/")),
        "schedule": env.get("RECONCILE_SCHEDULE", ""),
        "check_outputs": env.get("RECONCILE_CHECK_OUTPUTS", ""),
        "seconds": seconds,
        "storage_ops": operations,
        "storage_ops_per_file": operations / max(1, files),
        "storage": counted,
        "report": {key: len(value) for key, value in vars(report).items()},
    }


def reconcile_lines(due: dict[str, Any], idle: dict[str, Any]) -> list[str]:
    """Printable lines: the pass a deadline later, per file and by kind, and a pass when nothing is due."""
    per_kind = ", ".join(f"{kind} {n / max(1, due['files']):.3f}" for kind, n in due["storage"].items())
    done = ", ".join(f"{k} {v}" for k, v in due["report"].items() if v)
    return [
        f"  reconcile a deadline later (one pass, {due['files']} files, {due['records']:,} ledger records, "
        f"RECONCILE_CHECK_OUTPUTS={due['check_outputs'] or 'true'}): "
        f"{due['storage_ops_per_file']:.2f} storage ops per file ({per_kind or 'none'}); {done or 'nothing done'}",
        f"  reconcile when nothing is due: {idle['storage_ops']} storage ops per pass "
        f"({', '.join(f'{k} {v}' for k, v in idle['storage'].items()) or 'none'}) over {idle['records']:,} records; "
        f"timer schedule {idle['schedule']!r}",
    ]
