"""Use case ``submit``: a new input blob becomes an :class:`InferenceRequest` on the request topic.

Name, URL, size, ETag and metadata come from one ranged read of the blob's first
:data:`~shared.contracts.INLINE_INPUT_MAX_BYTES`: a file that small is then read whole, and its bytes travel with
the request, so the endpoint does not read it again (one storage request less per small file); a larger file is
never read further here. A bad file (name, size, format, metadata) gets an error record and a failed ledger entry
at once.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from shared.blobnames import has_control_characters, name_problem
from shared.contracts import (
    INLINE_INPUT_MAX_BYTES,
    DataFormat,
    ErrorCode,
    InferenceRequest,
    RequestState,
    derive_request_id,
    detect_format,
    iso,
)
from shared.errors import write_error_record
from shared.ledger import Ledger, LedgerRecord, failed, submitted
from shared.messages import request_message
from shared.ports import BlobInfo, BlobNotFound, BlobStore, MessageBus
from shared.settings import Settings
from shared.telemetry import logs

logger = logging.getLogger(__name__)

MAX_SESSION_ID_LENGTH = 128  # Service Bus session id limit
META_SESSION = "session_id"
META_MODEL = "model"
# The reply session of every file uploaded without session_id metadata. The Functions runtime runs a batch trigger
# on sessions (write_result) as one loop per instance: it takes a session, writes its batches until the session has
# been idle for sessionIdleTimeout, then takes the next. A session per file would be written at about one file per
# accept plus sessionIdleTimeout per instance; one shared session is written in batches. The results of one input
# name stay in order within it.
DEFAULT_SESSION = "default"


class SubmitOutcome(StrEnum):
    PUBLISHED = "published"
    REJECTED = "rejected"
    ALREADY_IN_FLIGHT = "already_in_flight"
    GONE = "gone"


class Rejection(Exception):
    """The input file cannot be submitted; becomes its error record."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def choose_session(metadata: Mapping[str, str]) -> str:
    """The reply session the metadata names, or :data:`DEFAULT_SESSION`; raises Rejection for an unusable one."""
    session = metadata.get(META_SESSION)
    if session is None:
        return DEFAULT_SESSION
    if not session.strip() or len(session) > MAX_SESSION_ID_LENGTH or has_control_characters(session):
        raise Rejection(
            ErrorCode.INVALID_REQUEST, f"metadata session_id must be 1-{MAX_SESSION_ID_LENGTH} printable characters"
        )
    return session


def choose_model(name: str, metadata: Mapping[str, str], settings: Settings) -> str:
    model = metadata.get(META_MODEL)
    if model is not None:
        if settings.route(model) is None:
            raise Rejection(
                ErrorCode.UNKNOWN_MODEL, f"model {model!r} is not routed; known: {', '.join(settings.models)}"
            )
        return model
    prefix = name.split("/", 1)[0] if "/" in name else None
    if prefix is not None and settings.route(prefix) is not None:
        return prefix
    return settings.routes[0].model


def check_file(name: str, info: BlobInfo, settings: Settings) -> tuple[DataFormat, str | None]:
    """Format and compression of an acceptable file; raises Rejection."""
    if problem := name_problem(name):
        raise Rejection(ErrorCode.INVALID_NAME, problem)
    fmt = detect_format(name)
    if fmt is None:
        raise Rejection(
            ErrorCode.UNSUPPORTED_FORMAT, "supported: .csv, .jsonl, .ndjson (optionally with .gz), .parquet"
        )
    if info.size == 0:
        raise Rejection(ErrorCode.EMPTY_FILE, "the file is empty")
    if info.size > settings.max_input_bytes:
        raise Rejection(ErrorCode.TOO_LARGE, f"{info.size} bytes is over the limit of {settings.max_input_bytes}")
    return fmt


def submit_blob(
    container: str,
    name: str,
    *,
    settings: Settings,
    blobs: BlobStore,
    bus: MessageBus,
    ledger: Ledger,
    now: datetime,
    trigger_info: BlobInfo | None = None,
) -> SubmitOutcome:
    """``trigger_info`` is what the trigger itself knew about the blob; it stands in for the blob's properties
    when the name is unsafe to use in a storage request (path tricks are never sent to storage)."""
    if problem := name_problem(name):
        info = trigger_info or BlobInfo(name=name, url="", etag="", size=0)
        request_id = derive_request_id(container, name, info.etag)
        logs.set_request_id(request_id)
        rejection = Rejection(ErrorCode.INVALID_NAME, problem)
        _reject(container, name, info, request_id, rejection, settings=settings, blobs=blobs, ledger=ledger, now=now)
        return SubmitOutcome.REJECTED
    try:
        info, content = blobs.peek(container, name, INLINE_INPUT_MAX_BYTES)
    except BlobNotFound:
        logger.warning("input %s/%s is gone before it could be submitted", container, name)
        return SubmitOutcome.GONE
    request_id = derive_request_id(container, name, info.etag)
    logs.set_request_id(request_id)  # the log lines from here on name the request
    metadata = {k.lower(): v for k, v in info.metadata.items()}
    try:
        fmt = check_file(name, info, settings)
        session = choose_session(metadata)
        model = choose_model(name, metadata, settings)
    except Rejection as rejection:
        _reject(container, name, info, request_id, rejection, settings=settings, blobs=blobs, ledger=ledger, now=now)
        return SubmitOutcome.REJECTED
    request = InferenceRequest(
        request_id=request_id,
        container=container,
        blob_name=name,
        blob_url=info.url,
        etag=info.etag.strip('"'),
        size=info.size,
        format=fmt[0],
        compression=fmt[1],
        session_id=session,
        model=model,
        submitted_at=iso(now),
        input_b64=None if content is None else base64.b64encode(content).decode("ascii"),
    )
    # A new blob has no record yet: create it without reading first (a redelivery reads it on the conflict).
    stored = ledger.advance_tagged(request_id, submitted(request, now), now=now, known=(None, None))
    record = stored.record
    if record is not None and record.state != RequestState.SUBMITTED:
        logger.info("request %s for %s is already %s; not publishing again", request_id, name, record.state)
        return SubmitOutcome.ALREADY_IN_FLIGHT
    if stored.written and record is not None and record == LedgerRecord.created_for(request, record.traceparent):
        # The message names the record this call created, so score_request can write "accepted" against it
        # without a read. A record that was already there (a re-fired trigger) is not named: the message could
        # not describe it.
        request = replace(request, ledger_etag=stored.etag)
    bus.publish(settings.request_topic, request_message(request))
    logger.info("submitted %s/%s as request %s (model %s, session %s)", container, name, request_id, model, session)
    return SubmitOutcome.PUBLISHED


def _reject(
    container: str,
    name: str,
    info: BlobInfo,
    request_id: str,
    rejection: Rejection,
    *,
    settings: Settings,
    blobs: BlobStore,
    ledger: Ledger,
    now: datetime,
) -> None:
    logger.warning("rejected input %r: %s (%s)", name, rejection.code, rejection.message)
    location = write_error_record(
        blobs,
        settings.output_container,
        input_name=name,
        input_container=container,
        input_etag=info.etag or None,
        request_id=request_id,
        code=rejection.code,
        message=rejection.message,
        now=now,
    )
    base = LedgerRecord.new(
        request_id,
        container=container,
        name=name,
        model=str(info.metadata.get(META_MODEL, "")),
        now=now,
        url=info.url,
        etag=info.etag,
        size=info.size,
        submitted_at=iso(now),
    )
    transition = failed(base, now, code=rejection.code, message=rejection.message, error_location=location)
    ledger.advance(request_id, transition, now=now)
