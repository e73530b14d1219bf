"""Use case ``reconcile``: no request is lost, and no record claims a result that is not there.

It lists the requests marked in flight (:mod:`shared.ledger`) and acts on those whose record last changed
more than ``RESULT_DEADLINE_MINUTES`` ago:

* a request still waiting for its result (the endpoint lost it, or its request message was dead-lettered
  by an unexpected error) is published again with ``attempt + 1`` (up to ``MAX_RESUBMITS`` times); after
  that it is failed with ``result_timeout`` and an error record. The message is published before the
  ledger moves on, and its id is fixed per attempt, so a crash in between at worst publishes the same
  attempt twice (dropped by duplicate detection, or scored twice and written once);
* a finished request has its result checked: the output the record names (for a success, the output its
  listing names, without reading the record; the outputs of a pass's successes that share a folder are found
  with one listing of that folder, a page per 5,000 blobs, instead of a read each), or for a failure its error
  record (or an output of the same input that superseded it). Only then is the mark cleared. A
  success whose output is gone (storage lost a write the record outlived) is reopened as a new attempt
  and published again; a failure whose error record is gone gets it written again from the record.

Checking a result only a deadline after it was recorded means the check sees settled storage. Successes are
marked, and so checked, only with ``RECONCILE_CHECK_OUTPUTS=true`` (the local stack: see :mod:`shared.ledger`).

Each marker is handled in the request's log scope (its lines carry the request id), and each action on a
request (resubmit, time-out, reopen, error record written again) runs in a span of the file's own trace,
continued from the context its ledger record kept, so a resubmitted message stays in that trace.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.contracts import ErrorCode, RequestState, output_blob_name, parse_iso
from shared.errors import record_error
from shared.ledger import Ledger, LedgerRecord, Marker, failed, reopened, submitted
from shared.listing import find_by_listing
from shared.messages import request_message
from shared.ports import BlobStore, MessageBus, properties_or_none
from shared.settings import Settings
from shared.telemetry import logs, pipeline

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
    return _Pass(settings, blobs, bus, ledger, now).run()


@dataclass
class _Pass:
    """One reconcile pass over the overdue markers."""

    settings: Settings
    blobs: BlobStore
    bus: MessageBus
    ledger: Ledger
    now: datetime
    report: ReconcileReport = field(default_factory=ReconcileReport)
    listed: set[str] = field(default_factory=set)  # outputs a listing of their folder showed, "container/name"

    def run(self) -> ReconcileReport:
        deadline = timedelta(minutes=self.settings.result_deadline_minutes)
        due = [m for m in self.ledger.inflight() if self.now - m.since >= deadline]
        self.listed = self._list_outputs(due)
        for marker in due:
            with logs.request_scope(marker.request_id):
                self._one(marker, deadline)
        return self.report

    def _list_outputs(self, due: list[Marker]) -> set[str]:
        """The listed successes' outputs found by listing the folders several of them share
        (:func:`shared.listing.find_by_listing`); the others are read one by one."""
        wanted: list[tuple[str, str]] = []
        for marker in due:
            location = marker.listed_output
            if location and "/" in location:
                container, name = location.split("/", 1)
                wanted.append((container, name))
        return {f"{container}/{name}" for container, name in find_by_listing(self.blobs, wanted).found}

    def _one(self, marker: Marker, deadline: timedelta) -> None:
        if self._listed_output_there(marker):
            return
        record = self.ledger.get(marker.request_id)
        if record is None:
            self._release(marker)
        elif not self._due(record, deadline):
            return
        elif record.state == RequestState.SUCCEEDED:
            self._check_output(record, marker)
        elif record.state == RequestState.FAILED:
            self._check_error_record(record, marker)
        else:
            self._overdue(record, marker)

    def _listed_output_there(self, marker: Marker) -> bool:
        """A success whose listing names its output, and the output is there: the mark is cleared without reading
        the record. The listed metadata and the ETag the release is conditional on are of one version of the
        record, so only that version's mark is cleared; a record changed since keeps it for the next pass. An
        output that is not there is left to the check from the record."""
        location = marker.listed_output
        if location is None or not (location in self.listed or self._exists(location)):
            return False
        self._release(marker)
        return True

    def _due(self, record: LedgerRecord, deadline: timedelta) -> bool:
        """The record as read is a deadline old (it may have changed since the listing)."""
        try:
            return record.updated_at is None or self.now - parse_iso(record.updated_at) >= deadline
        except ValueError:
            return True

    def _release(self, marker: Marker) -> None:
        if self.ledger.release(marker):
            self.report.cleaned.append(marker.request_id)

    def _exists(self, location: str | None) -> bool:
        if not location or "/" not in location:
            return False
        container, name = location.split("/", 1)
        return properties_or_none(self.blobs, container, name) is not None

    def _check_output(self, record: LedgerRecord, marker: Marker) -> None:
        if self._exists(record.output_location):
            self._release(marker)
            return
        request_id, attempt = record.request_id, max(record.attempt, marker.attempt) + 1
        request = record.request(attempt)
        if request is None:
            logger.error("request %s: output %s is gone and the record cannot be resubmitted", request_id,
                         record.output_location)  # fmt: skip
            return
        with self._span(record, attempt, "output_gone"):
            # Ledger first: a published attempt must not find the record still saying "succeeded".
            stored = self.ledger.advance(request_id, reopened(attempt, self.now), now=self.now)
            if stored is None or stored.state != RequestState.SUBMITTED or stored.attempt != attempt:
                return  # the record changed since it was read; the next pass looks again
            self.bus.publish(self.settings.request_topic, request_message(request))
            self.report.reopened.append(request_id)
            logger.warning("request %s: output %s is gone; resubmitted as attempt %s", request_id,
                           record.output_location, attempt)  # fmt: skip

    def _check_error_record(self, record: LedgerRecord, marker: Marker) -> None:
        superseded = f"{self.settings.output_container}/{output_blob_name(record.input_name)}"
        if self._exists(record.error_location) or self._exists(superseded):
            self._release(marker)
            return
        with self._span(record, record.attempt, "error_record_gone"):
            location = self._error_record(record, record.attempt, record.error_code or ErrorCode.INTERNAL,
                                          record.error_message or "")  # fmt: skip
            self.report.error_rewritten.append(record.request_id)
            logger.warning("request %s: error record %s was gone; written again at %s", record.request_id,
                           record.error_location, location)  # fmt: skip

    def _overdue(self, record: LedgerRecord, marker: Marker) -> None:
        request_id, attempt = record.request_id, max(record.attempt, marker.attempt)
        request = record.request(attempt + 1)
        if request is not None and attempt <= self.settings.max_resubmits:
            with self._span(record, request.attempt, "result_overdue"):
                self.bus.publish(self.settings.request_topic, request_message(request))
                self.ledger.advance(request_id, submitted(request, self.now), now=self.now)
                self.report.resubmitted.append(request_id)
                logger.warning("request %s had no result in time; resubmitted as attempt %s", request_id,
                               request.attempt)  # fmt: skip
            return
        message = f"no result within {self.settings.result_deadline_minutes} minutes after {attempt} attempt(s)"
        with self._span(record, attempt, ErrorCode.RESULT_TIMEOUT.value):
            location = self._error_record(record, attempt, ErrorCode.RESULT_TIMEOUT, message)
            transition = failed(record, self.now, code=ErrorCode.RESULT_TIMEOUT, message=message,
                                error_location=location)  # fmt: skip
            self.ledger.advance(request_id, transition, now=self.now)
            self.report.timed_out.append(request_id)
            logger.error("request %s failed: %s", request_id, message)

    def _span(self, record: LedgerRecord, attempt: int, reason: str) -> AbstractContextManager[object]:
        return pipeline.resumed_span("reconcile", record.traceparent, request_id=record.request_id, attempt=attempt,
                                     reason=reason)  # fmt: skip

    def _error_record(self, record: LedgerRecord, attempt: int, code: str, message: str) -> str | None:
        return record_error(self.blobs, self.settings.output_container, record, code=code, message=message,
                            now=self.now, attempt=attempt)  # fmt: skip
