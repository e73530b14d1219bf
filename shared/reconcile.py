"""Use case ``reconcile``: no request is lost, and no record claims a result that is not there.

It reads the in-flight markers (:mod:`shared.ledger`) whose request last changed state more than
``RESULT_DEADLINE_MINUTES`` ago:

* a request still waiting for its result (the endpoint lost it, or its request message was dead-lettered
  by an unexpected error) is published again with ``attempt + 1`` (up to ``MAX_RESUBMITS`` times); after
  that it is failed with ``result_timeout`` and an error record. The message is published before the
  ledger moves on, and its id is fixed per attempt, so a crash in between at worst publishes the same
  attempt twice (dropped by duplicate detection, or scored twice and written once);
* a finished request has its result checked: the output the record names, or for a failure its error
  record (or an output of the same input that superseded it). Only then is the marker released. A
  success whose output is gone (storage lost a write the record outlived) is reopened as a new attempt
  and published again; a failure whose error record is gone gets it written again from the record.

Checking a result only a deadline after it was recorded means the check sees settled storage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.contracts import ErrorCode, RequestState, output_blob_name
from shared.errors import write_error_record
from shared.ledger import Ledger, LedgerRecord, Marker, failed, reopened, submitted
from shared.messages import request_message
from shared.ports import BlobNotFound, BlobStore, MessageBus
from shared.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    resubmitted: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)  # succeeded, but the output was gone
    error_rewritten: list[str] = field(default_factory=list)  # failed, but the error record was gone


def reconcile(
    *, settings: Settings, blobs: BlobStore, bus: MessageBus, ledger: Ledger, now: datetime
) -> ReconcileReport:
    report = ReconcileReport()
    deadline = timedelta(minutes=settings.result_deadline_minutes)
    for marker in [m for m in ledger.inflight() if now - m.since >= deadline]:
        record = ledger.get(marker.request_id)
        if record is None:
            if ledger.release(marker):
                report.cleaned.append(marker.request_id)
        elif record.terminal:
            _check_result(record, marker, settings=settings, blobs=blobs, bus=bus, ledger=ledger, now=now,
                          report=report)  # fmt: skip
        else:
            _overdue(record, marker, settings=settings, blobs=blobs, bus=bus, ledger=ledger, now=now, report=report)
    return report


def _exists(blobs: BlobStore, location: str | None) -> bool:
    if not location or "/" not in location:
        return False
    container, name = location.split("/", 1)
    try:
        blobs.properties(container, name)
    except BlobNotFound:
        return False
    return True


def _check_result(
    record: LedgerRecord,
    marker: Marker,
    *,
    settings: Settings,
    blobs: BlobStore,
    bus: MessageBus,
    ledger: Ledger,
    now: datetime,
    report: ReconcileReport,
) -> None:
    request_id = record.request_id
    if record.state == RequestState.SUCCEEDED:
        if _exists(blobs, record.output_location):
            if ledger.release(marker):
                report.cleaned.append(request_id)
            return
        attempt = max(record.attempt, marker.attempt) + 1
        request = record.request(attempt)
        if request is None:
            logger.error("request %s: output %s is gone and the record cannot be resubmitted", request_id,
                         record.output_location)  # fmt: skip
            return
        # Ledger first: a published attempt must not find the record still saying "succeeded".
        stored = ledger.advance(request_id, reopened(attempt, now), now=now)
        if stored is None or stored.state != RequestState.SUBMITTED or stored.attempt != attempt:
            return  # the record changed since it was read; the next pass looks again
        bus.publish(settings.request_topic, request_message(request))
        report.reopened.append(request_id)
        logger.warning("request %s: output %s is gone; resubmitted as attempt %s", request_id,
                       record.output_location, attempt)  # fmt: skip
        return
    superseded = f"{settings.output_container}/{output_blob_name(record.input_name)}"
    if _exists(blobs, record.error_location) or _exists(blobs, superseded):
        if ledger.release(marker):
            report.cleaned.append(request_id)
        return
    location = write_error_record(
        blobs,
        settings.output_container,
        input_name=record.input_name,
        input_container=record.input_container,
        input_etag=record.etag,
        request_id=request_id,
        attempt=record.attempt,
        code=record.error_code or ErrorCode.INTERNAL,
        message=record.error_message or "",
        rows_scored=record.rows_scored or 0,
        rows_failed=record.rows_failed or 0,
        now=now,
    )
    report.error_rewritten.append(request_id)
    logger.warning("request %s: error record %s was gone; written again at %s", request_id,
                   record.error_location, location)  # fmt: skip


def _overdue(
    record: LedgerRecord,
    marker: Marker,
    *,
    settings: Settings,
    blobs: BlobStore,
    bus: MessageBus,
    ledger: Ledger,
    now: datetime,
    report: ReconcileReport,
) -> None:
    request_id = record.request_id
    deadline = timedelta(minutes=settings.result_deadline_minutes)
    attempt = max(record.attempt, marker.attempt)
    request = record.request(attempt + 1)
    if request is not None and attempt <= settings.max_resubmits:
        bus.publish(settings.request_topic, request_message(request))
        ledger.advance(request_id, submitted(request, now), now=now)
        report.resubmitted.append(request_id)
        logger.warning("request %s had no result after %s; resubmitted as attempt %s", request_id, deadline,
                       request.attempt)  # fmt: skip
        return
    message = f"no result within {settings.result_deadline_minutes} minutes after {attempt} attempt(s)"
    location = write_error_record(
        blobs,
        settings.output_container,
        input_name=record.input_name,
        input_container=record.input_container,
        input_etag=record.etag,
        request_id=request_id,
        attempt=attempt,
        code=ErrorCode.RESULT_TIMEOUT,
        message=message,
        now=now,
    )
    transition = failed(record, now, code=ErrorCode.RESULT_TIMEOUT, message=message, error_location=location)
    ledger.advance(request_id, transition, now=now)
    report.timed_out.append(request_id)
    logger.error("request %s failed: %s", request_id, message)
