"""Use case ``reconcile``: requests without a result in time are not lost.

A request whose current attempt was submitted or accepted more than ``RESULT_DEADLINE_MINUTES`` ago and
has no result (the endpoint lost it, or its request message was dead-lettered by an unexpected error) is
published again with ``attempt + 1`` (up to ``MAX_RESUBMITS`` times); after that it is failed with
``result_timeout`` and an error record. The message
is published before the ledger moves on, and its id is fixed per attempt, so a crash in between at worst
publishes the same attempt twice (dropped by duplicate detection, or scored twice and written once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.contracts import ErrorCode, InferenceRequest, detect_format
from shared.errors import write_error_record
from shared.ledger import Ledger, LedgerRecord, failed, submitted
from shared.messages import request_message
from shared.ports import BlobStore, MessageBus
from shared.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    resubmitted: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)


def _request_from(record: LedgerRecord, attempt: int) -> InferenceRequest | None:
    fmt = detect_format(record.input_name)
    if fmt is None or record.input_url is None or record.etag is None or record.session_id is None:
        return None
    return InferenceRequest(
        request_id=record.request_id,
        container=record.input_container,
        blob_name=record.input_name,
        blob_url=record.input_url,
        etag=record.etag,
        size=record.size or 0,
        format=fmt[0],
        compression=fmt[1],
        session_id=record.session_id,
        model=record.model,
        submitted_at=record.submitted_at or "",
        attempt=attempt,
    )


def reconcile(
    *, settings: Settings, blobs: BlobStore, bus: MessageBus, ledger: Ledger, now: datetime
) -> ReconcileReport:
    report = ReconcileReport()
    deadline = timedelta(minutes=settings.result_deadline_minutes)
    overdue = [(rid, attempt) for rid, since, attempt in ledger.inflight() if now - since >= deadline]
    for request_id, marked_attempt in overdue:
        record = ledger.get(request_id)
        if record is None or record.terminal:
            ledger.clear_inflight(request_id)
            report.cleaned.append(request_id)
            continue
        attempt = max(record.attempt, marked_attempt)
        request = _request_from(record, attempt + 1)
        if request is not None and attempt <= settings.max_resubmits:
            bus.publish(settings.request_topic, request_message(request))
            ledger.mark_inflight(request_id, now, request.attempt)
            ledger.update(request_id, submitted(request, now))
            report.resubmitted.append(request_id)
            logger.warning("request %s had no result after %s; resubmitted as attempt %s", request_id, deadline,
                           request.attempt)  # fmt: skip
            continue
        message = f"no result within {settings.result_deadline_minutes} minutes after {attempt} attempt(s)"
        location = write_error_record(
            blobs,
            settings.output_container,
            input_name=record.input_name,
            input_container=record.input_container,
            request_id=request_id,
            attempt=attempt,
            code=ErrorCode.RESULT_TIMEOUT,
            message=message,
            now=now,
        )
        ledger.update(request_id, failed(record, now, code=ErrorCode.RESULT_TIMEOUT, message=message,
                                         error_location=location))  # fmt: skip
        ledger.clear_inflight(request_id)
        report.timed_out.append(request_id)
        logger.error("request %s failed: %s", request_id, message)
    return report
