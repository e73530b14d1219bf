"""Request ledger: one JSON blob per request in the ledger container, updated with ETag conditions.

Layout (container ``LEDGER_CONTAINER``):

* ``requests/<request_id>.json``: the :class:`LedgerRecord` (source of truth for ``request_status``). Its
  metadata repeats the state, attempt and times (:meth:`LedgerRecord.listing_metadata`), and for a success
  its output location, so one listing shows every request's stage, and carries the in-flight mark
  ``inflight=true`` from every state change until ``reconcile`` has checked the request's result.
  ``reconcile`` finds the requests to look at with one listing of the records (a page per 5,000), instead of
  reading each, and checks a listed success's output without reading its record.

The ledger owns the record and its mark: :meth:`Ledger.advance` is the only way a request's state changes,
and it writes the record with the mark in one request, with ``If-Match`` on the ETag it read (or
``If-None-Match: *`` for a new record); on a conflict it re-reads and retries, so concurrent writers (a late
result racing ``accepted``, two deliveries of one message) never clobber each other. Record and mark cannot
disagree: they are one blob. A finished request keeps its mark: only :meth:`Ledger.release`, called by
``reconcile`` once it has checked that the output or error record the record names really exists, a deadline
after the record's last change, clears it (Set Blob Metadata, conditional on the ETag it listed, so a record
changed in the meantime keeps its mark). A record that says an output exists is therefore never taken on
trust where storage can lose an acknowledged write: Azurite, which restores its last save after ``kill -9``.
Azure Storage does not lose one, and the writer records a success only once its output is written (or found
there), so with ``RECONCILE_CHECK_OUTPUTS=false`` (the Bicep's value) a success is written without the mark and
costs ``reconcile`` nothing; every other state keeps it. Markers of the earlier layout (empty blobs
``inflight/<request_id>``) are still listed and released.

Transitions are pure functions of the current record; they never go back from a terminal state, except
that a late success replaces a failure and a success whose output is gone is reopened as a new attempt.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from shared.contracts import (
    InferenceRequest,
    InferenceResult,
    RequestState,
    derive_request_id,
    detect_format,
    iso,
    parse_iso,
)
from shared.ports import BlobInfo, BlobNotFound, BlobStore, PreconditionFailed
from shared.retry import LEDGER_CONFLICT
from shared.telemetry import logs, pipeline

logger = logging.getLogger(__name__)

RECORDS = "requests/"
INFLIGHT = "inflight/"  # the earlier layout's markers, still honoured
MARK = "inflight"  # record metadata: the request's result is not checked yet
OUTPUT = "output"  # record metadata: a success's output location, percent-encoded
OUTPUT_LISTING_MAX = 2048  # longer locations are not listed (all of a blob's metadata must fit in 8 KiB)
TERMINAL = (RequestState.SUCCEEDED, RequestState.FAILED)
_LISTING_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class LedgerRecord:
    request_id: str
    state: RequestState
    input_container: str
    input_name: str
    model: str
    attempt: int = 1
    input_url: str | None = None
    etag: str | None = None
    size: int | None = None
    session_id: str | None = None
    submitted_at: str | None = None
    accepted_at: str | None = None
    completed_at: str | None = None
    updated_at: str | None = None
    output_location: str | None = None
    error_location: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    rows_scored: int | None = None
    rows_failed: int | None = None
    scoring_retries: int = 0
    dead_letter_reason: str | None = None
    traceparent: str | None = None  # the file's trace (W3C), kept from the record's first write

    @classmethod
    def new(
        cls,
        request_id: str,
        *,
        container: str,
        name: str,
        model: str,
        now: datetime,
        attempt: int = 1,
        url: str | None = None,
        etag: str | None = None,
        size: int | None = None,
        session_id: str | None = None,
        submitted_at: str | None = None,
    ) -> LedgerRecord:
        """The one constructor of a record: a request the ledger has not seen yet, in state ``submitted``.

        Transitions start from it when there is no record (a rejected file, a result for a request whose
        record is missing) and set the state they stand for."""
        return cls(
            request_id=request_id,
            state=RequestState.SUBMITTED,
            input_container=container,
            input_name=name,
            model=model,
            attempt=attempt,
            input_url=url,
            etag=etag.strip('"') if etag is not None else None,
            size=size,
            session_id=session_id,
            submitted_at=submitted_at,
            updated_at=iso(now),
        )

    def listing_metadata(self) -> dict[str, str]:
        """The record blob's metadata: state and times, so one listing of the ledger shows every request's
        stage and timing (the status page's counts and charts read nothing else). Metadata is ASCII."""
        values = {
            "state": self.state.value,
            "model": self.model,
            "attempt": str(self.attempt),
            "submitted_at": self.submitted_at,
            "accepted_at": self.accepted_at,
            "completed_at": self.completed_at,
            "updated_at": self.updated_at,
            "error_code": _LISTING_UNSAFE.sub("_", self.error_code)[:64] if self.error_code else None,
            OUTPUT: self.listed_output(),
        }
        return {key: value for key, value in values.items() if value}

    def listed_output(self) -> str | None:
        """A success's output location as its listing shows it (percent-encoded, so any name fits ASCII metadata),
        which lets ``reconcile`` check the output without reading the record; None when there is none or it is
        too long to list."""
        if self.state != RequestState.SUCCEEDED or not self.output_location:
            return None
        listed = quote(self.output_location, safe="/")
        return listed if len(listed) <= OUTPUT_LISTING_MAX else None

    @classmethod
    def for_request(cls, request: InferenceRequest, now: datetime) -> LedgerRecord:
        return cls.new(
            request.request_id,
            container=request.container,
            name=request.blob_name,
            model=request.model,
            now=now,
            attempt=request.attempt,
            url=request.blob_url,
            etag=request.etag,
            size=request.size,
            session_id=request.session_id,
            submitted_at=request.submitted_at,
        )

    @classmethod
    def created_for(cls, request: InferenceRequest, traceparent: str | None) -> LedgerRecord:
        """The record ``submit`` creates for ``request`` when there is none yet: a pure function of the request
        (its ``submitted_at`` is the record's time) and of the trace it was written in, which is the trace the
        request message carries. A step holding the message and the ETag of that write therefore knows the
        record without reading it; the ETag condition on its next write proves the record is still that one."""
        return replace(cls.for_request(request, parse_iso(request.submitted_at)), traceparent=traceparent)

    @classmethod
    def for_result(cls, result: InferenceResult, input_container: str, now: datetime) -> LedgerRecord:
        return cls.new(
            result.request_id,
            container=input_container,
            name=result.input_name,
            model=result.model,
            now=now,
            attempt=result.attempt,
        )

    def request(self, attempt: int) -> InferenceRequest | None:
        """The request message for ``attempt`` of this record (None if the record lacks what it needs)."""
        fmt = detect_format(self.input_name)
        if fmt is None or self.input_url is None or self.etag is None or self.session_id is None:
            return None
        return InferenceRequest(
            request_id=self.request_id,
            container=self.input_container,
            blob_name=self.input_name,
            blob_url=self.input_url,
            etag=self.etag,
            size=self.size or 0,
            format=fmt[0],
            compression=fmt[1],
            session_id=self.session_id,
            model=self.model,
            submitted_at=self.submitted_at or "",
            attempt=attempt,
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LedgerRecord:
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["state"] = RequestState(values["state"])
        return cls(**values)

    def public_view(self) -> dict[str, object]:
        """What ``request_status`` shows (no internal counters)."""
        view = asdict(self)
        view.pop("scoring_retries", None)
        view["state"] = self.state.value
        return view


Transition = Callable[[LedgerRecord | None], LedgerRecord | None]


@dataclass(frozen=True)
class Stored:
    """What :meth:`Ledger.advance_tagged` left: the record as stored, its ETag (None when there is no record),
    and whether this call wrote it (False: the transition left the record as it was)."""

    record: LedgerRecord | None
    etag: str | None
    written: bool


@dataclass(frozen=True)
class Marker:
    """A request marked in flight, as listed: since when (its record's last change), its attempt, and the ETag
    and metadata of the blob that carries the mark."""

    request_id: str
    since: datetime
    attempt: int
    etag: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    blob: str = ""

    @property
    def listed_output(self) -> str | None:
        """The output location the listed record names, if it is a success that lists it (see
        :meth:`LedgerRecord.listed_output`)."""
        listed = self.metadata.get(OUTPUT)
        if self.blob.startswith(INFLIGHT) or self.metadata.get("state") != RequestState.SUCCEEDED or not listed:
            return None
        return unquote(listed)


@dataclass(frozen=True)
class Handover:
    """A record change handed on with the request instead of written: ``record`` is the record as the step that
    sent the request would have written it, derived from the stored version whose ETag is ``etag``. The step that
    writes next (the writer) applies its own transition to ``record`` and writes against ``etag``: one conditional
    write stands for both changes, and if the record changed in between the write fails its condition and the
    writer reads and decides like any conflict. It travels as an opaque string
    (:attr:`shared.contracts.AsyncScoringRequest.context`, returned in the result)."""

    record: LedgerRecord
    etag: str

    @functools.cached_property
    def context(self) -> str:
        """The handover as the request's ``context`` string (made once: its length is checked before it is sent)."""
        return json.dumps({"handover": 1, "etag": self.etag, "record": asdict(self.record)}, sort_keys=True,
                          separators=(",", ":"))  # fmt: skip

    @classmethod
    def from_context(cls, context: str | None, request_id: str, attempt: int) -> Handover | None:
        """The handover in ``context`` if it is one for ``request_id`` at ``attempt``; None otherwise (no
        context, another caller's, or an unreadable one: the writer then reads the record)."""
        if not context:
            return None
        try:
            data = json.loads(context)
            if not isinstance(data, dict) or data.get("handover") != 1 or not isinstance(data.get("etag"), str):
                return None
            record = LedgerRecord.from_dict(data["record"])
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("request %s: result context is not a ledger handover (%s); reading the record",
                           request_id, exc)  # fmt: skip
            return None
        if record.request_id != request_id or record.attempt != attempt or record.etag is None:
            return None
        if derive_request_id(record.input_container, record.input_name, record.etag) != request_id:
            # The request id names one version of one blob: a record naming another is not this request's.
            logger.warning("request %s: the handed-over record names another input; reading the record", request_id)
            return None
        return cls(record, data["etag"])


class Ledger:
    def __init__(self, blobs: BlobStore, container: str, *, check_successes: bool = True) -> None:
        """``check_successes`` False (``RECONCILE_CHECK_OUTPUTS=false``, for a storage that never loses an
        acknowledged write): a success is written without the mark, as its output was there when it was written."""
        self._blobs = blobs
        self._container = container
        self._check_successes = check_successes

    def get(self, request_id: str) -> LedgerRecord | None:
        return self.read(request_id)[0]

    def read(self, request_id: str) -> tuple[LedgerRecord | None, str | None]:
        """The record and its ETag (``(None, None)`` when there is none); hand both to :meth:`update` as
        ``known`` to save it a read when nothing changes in between."""
        try:
            raw, etag = self._blobs.read(self._container, f"{RECORDS}{request_id}.json")
        except BlobNotFound:
            return None, None
        return LedgerRecord.from_json(raw), etag

    def location(self, request_id: str) -> str:
        return f"{self._container}/{RECORDS}{request_id}.json"

    def advance(
        self,
        request_id: str,
        transition: Transition,
        *,
        now: datetime,
        known: tuple[LedgerRecord | None, str | None] | None = None,
    ) -> LedgerRecord | None:
        """Applies ``transition`` atomically to the record and its marker; returns the stored record
        (unchanged if the transition returned None: then nothing is written at all).

        ``known`` is a ``(record, etag)`` the caller already read (``(None, None)``: expected to be new), or
        knows some other way (:meth:`LedgerRecord.created_for`, or a :class:`Handover`'s record, which is the
        stored version with a change not written yet); the first try writes against it, and a record changed
        since then is read again like any conflict.
        """
        return self.advance_tagged(request_id, transition, now=now, known=known).record

    def advance_tagged(
        self,
        request_id: str,
        transition: Transition,
        *,
        now: datetime,
        known: tuple[LedgerRecord | None, str | None] | None = None,
    ) -> Stored:
        """:meth:`advance`, also saying the stored record's ETag and whether this call wrote it."""
        conflict = 0
        while True:
            if conflict == 0 and known is not None:
                current, etag = known
            else:
                current, etag = self.read(request_id)
            new = transition(current)
            if new is None:
                return Stored(current, etag, written=False)
            if new.traceparent is None:
                new = replace(new, traceparent=pipeline.traceparent())
            try:
                new_etag = self._blobs.write(
                    self._container,
                    f"{RECORDS}{request_id}.json",
                    new.to_json(),
                    content_type="application/json",
                    metadata=self._metadata(new),
                    if_match=etag,
                    if_none_match_any=etag is None,
                )
                pipeline.recorded(current, new)
                return Stored(new, new_etag, written=True)
            except (PreconditionFailed, BlobNotFound) as lost:
                # A record written against an ETag it no longer has (a known record that was removed since, as
                # Azurite restored from its last save can leave it) may be answered 404 rather than 412: read it
                # again like any conflict. Without an ETag, 404 means the container is missing.
                if isinstance(lost, BlobNotFound) and etag is None:
                    raise
                if LEDGER_CONFLICT.gives_up(conflict):
                    raise RuntimeError(f"ledger record {request_id}: too many concurrent updates") from None
                logger.info("ledger record %s changed concurrently; retrying", request_id)
                time.sleep(LEDGER_CONFLICT.delay(conflict))
                conflict += 1

    def _metadata(self, record: LedgerRecord) -> dict[str, str]:
        """The record's listing metadata, with the mark unless it is a success that is not to be checked."""
        metadata = record.listing_metadata()
        if self._check_successes or record.state != RequestState.SUCCEEDED:
            metadata[MARK] = "true"
        return metadata

    def release(self, marker: Marker) -> bool:
        """Clears the mark of a request whose result was checked; False if the record changed since it was listed."""
        try:
            if marker.blob.startswith(INFLIGHT):
                self._blobs.delete(self._container, marker.blob, if_match=marker.etag)
            else:
                kept = {key: value for key, value in marker.metadata.items() if key != MARK}
                self._blobs.set_metadata(self._container, marker.blob, kept, if_match=marker.etag)
        except (PreconditionFailed, BlobNotFound):
            with logs.request_scope(marker.request_id):
                logger.info("ledger record of %s changed since it was listed; its mark is kept", marker.request_id)
            return False
        return True

    def inflight(self) -> Iterator[Marker]:
        """Every request marked in flight, from one listing of the records (and one of the earlier markers)."""
        marked = set()
        for info in self._blobs.list(self._container, RECORDS):
            if info.metadata.get(MARK) != "true" or not info.name.endswith(".json"):
                continue
            request_id = info.name[len(RECORDS) : -len(".json")]
            marked.add(request_id)
            marker = _marker(request_id, info, info.metadata.get("updated_at"))
            if marker is not None:
                yield marker
        for info in self._blobs.list(self._container, INFLIGHT):
            request_id = info.name[len(INFLIGHT) :]
            if request_id in marked:  # its record carries the mark now
                with contextlib.suppress(PreconditionFailed):
                    self._blobs.delete(self._container, info.name, if_match=info.etag)
                continue
            marker = _marker(request_id, info, info.metadata.get("since"))
            if marker is not None:
                yield marker


def _marker(request_id: str, info: BlobInfo, since: str | None) -> Marker | None:
    try:
        return Marker(request_id, parse_iso(since or ""), int(info.metadata["attempt"]), info.etag,
                      dict(info.metadata), info.name)  # fmt: skip
    except (KeyError, ValueError):
        with logs.request_scope(request_id):
            logger.warning("ledger blob %s has bad in-flight metadata %s", info.name, info.metadata)
        return None


# ---- transitions (pure) ----------------------------------------------------------------------------


def submitted(request: InferenceRequest, now: datetime) -> Transition:
    def apply(current: LedgerRecord | None) -> LedgerRecord | None:
        if current is None:
            return LedgerRecord.for_request(request, now)
        if current.terminal or current.attempt >= request.attempt:
            return None
        return replace(current, state=RequestState.SUBMITTED, attempt=request.attempt, updated_at=iso(now))

    return apply


def accepted(request: InferenceRequest, now: datetime, scoring_retries: int) -> Transition:
    def apply(current: LedgerRecord | None) -> LedgerRecord | None:
        base = current or LedgerRecord.for_request(request, now)
        if base.terminal or base.attempt > request.attempt:
            return None
        return replace(
            base,
            state=RequestState.ACCEPTED,
            attempt=request.attempt,
            accepted_at=iso(now),
            updated_at=iso(now),
            scoring_retries=max(base.scoring_retries, scoring_retries),
        )

    return apply


def succeeded(
    base: LedgerRecord, now: datetime, output_location: str, rows_scored: int, rows_failed: int, completed_at: str
) -> Transition:
    """``base`` is used when the record is missing (a result for a request the ledger never saw)."""

    def apply(current: LedgerRecord | None) -> LedgerRecord | None:
        if current is not None and current.state == RequestState.SUCCEEDED:
            return None
        record = current or base
        return replace(
            record,
            state=RequestState.SUCCEEDED,
            completed_at=completed_at,
            updated_at=iso(now),
            output_location=output_location,
            rows_scored=rows_scored,
            rows_failed=rows_failed,
        )

    return apply


def failed(
    base: LedgerRecord,
    now: datetime,
    *,
    code: str,
    message: str,
    error_location: str | None,
    rows_scored: int | None = None,
    rows_failed: int | None = None,
) -> Transition:
    def apply(current: LedgerRecord | None) -> LedgerRecord | None:
        if current is not None and current.terminal:
            return None
        record = current or base
        return replace(
            record,
            state=RequestState.FAILED,
            completed_at=iso(now),
            updated_at=iso(now),
            error_location=error_location,
            error_code=code,
            error_message=message,
            rows_scored=rows_scored,
            rows_failed=rows_failed,
        )

    return apply


def reopened(attempt: int, now: datetime) -> Transition:
    """A success whose output is gone: the request is submitted again as ``attempt`` (the record must still
    be the succeeded one it was checked as, at an earlier attempt)."""

    def apply(current: LedgerRecord | None) -> LedgerRecord | None:
        if current is None or current.state != RequestState.SUCCEEDED or current.attempt >= attempt:
            return None
        outcome: dict[str, Any] = dict.fromkeys(("completed_at", "output_location", "rows_scored", "rows_failed"))
        return replace(current, state=RequestState.SUBMITTED, attempt=attempt, updated_at=iso(now), **outcome)

    return apply
