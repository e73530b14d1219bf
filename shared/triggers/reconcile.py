"""``reconcile``: timer trigger (schedule from the ``RECONCILE_SCHEDULE`` setting) re-submitting overdue requests."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import reconcile as use_case
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)


@bp.function_name("reconcile")
@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def reconcile(timer: func.TimerRequest) -> None:
    svc = services()
    report = use_case.reconcile(
        settings=svc.settings, blobs=svc.blobs, bus=svc.bus, ledger=svc.ledger, now=svc.clock.now()
    )
    logger.info(
        "reconcile (past due: %s): %d resubmitted, %d timed out, %d markers released after their result was "
        "checked, %d reopened (output gone), %d error records written again",
        timer.past_due,
        len(report.resubmitted),
        len(report.timed_out),
        len(report.cleaned),
        len(report.reopened),
        len(report.error_rewritten),
    )
