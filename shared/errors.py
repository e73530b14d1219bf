"""Error records, ``errors/<input name>.error.json`` in the output container, and the rule that keeps one
result per input file: an output or an error record, never both.

An input can be scored more than once: a redelivered or resubmitted request, or a newer version of the
file (a new ETag is a new request). Which result stands:

* an output replaces the error record of its own request (a late success) and that of any other request
  when its own request is for the input's current version (:func:`remove_superseded_error`);
* an error record is not written, or is removed again right after, when an output exists and the
  failed request is for a version of the input that is no longer there (:func:`write_error_record`);
* an output replaces a different output of the same input only when its own request is for the input's
  current version (:func:`output_may_replace`): a small file's request carries the bytes it was submitted
  with, so a late result of an older version (retried after throttling, say) would otherwise put the older
  file's predictions back over the newer one's.

Both sides write first and check the other side after, so two writers racing on one input cannot both
miss each other. A newer version that fails while an older one's output exists keeps both, as the user
needs to see the error.

A request message that names no file (its body is not a request) is kept too, as
``errors/unreadable-messages/<message id>.message.json`` with its body (:func:`write_unreadable_message`):
such a message is completed rather than held back with the files of its batch, so this record is where it
can be found.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from datetime import datetime

from shared.blobnames import name_problem, safe_error_name
from shared.contracts import ErrorCode, RowError, error_blob_name, iso, output_blob_name
from shared.ledger import LedgerRecord
from shared.ports import BlobStore, PreconditionFailed, properties_or_none

logger = logging.getLogger(__name__)

ERROR_SCHEMA = "inference-error"
META_REQUEST_ID = "request_id"
UNREADABLE_PREFIX = "errors/unreadable-messages/"
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def write_error_record(
    blobs: BlobStore,
    container: str,
    *,
    input_name: str,
    request_id: str | None,
    code: str,
    message: str,
    now: datetime,
    input_container: str | None = None,
    input_etag: str | None = None,
    attempt: int | None = None,
    rows_scored: int = 0,
    rows_failed: int = 0,
    row_errors: Sequence[RowError] = (),
) -> str | None:
    """Writes (or replaces) the record and returns its location ``<container>/<name>``; None when an output
    of a newer version of the input stands instead (see the module docstring)."""
    if _stale_beside_output(blobs, container, input_container, input_name, input_etag):
        logger.info("error %s for %r not recorded: an output of a newer version stands", code, input_name)
        return None
    name = safe_error_name(input_name)
    document = {
        "schema": ERROR_SCHEMA,
        "version": 1,
        "request_id": request_id,
        "input": {"container": input_container, "name": input_name},
        "attempt": attempt,
        "error": {"code": code, "message": message},
        "rows_scored": rows_scored,
        "rows_failed": rows_failed,
        "row_errors": [{"row": e.row, "message": e.message} for e in row_errors],
        "recorded_at": iso(now),
    }
    data = json.dumps(document, indent=2, sort_keys=True).encode()
    metadata = {"code": code}
    if request_id:
        metadata[META_REQUEST_ID] = request_id
    etag = blobs.write(container, name, data, content_type="application/json", metadata=metadata)
    if _stale_beside_output(blobs, container, input_container, input_name, input_etag):
        logger.info("error %s for %r removed again: an output of a newer version was written", code, input_name)
        _delete_if_unchanged(blobs, container, name, etag)
        return None
    return f"{container}/{name}"


def record_error(
    blobs: BlobStore,
    container: str,
    record: LedgerRecord,
    *,
    code: str,
    message: str,
    now: datetime,
    attempt: int | None = None,
) -> str | None:
    """:func:`write_error_record` for the request a ledger record describes (its own attempt unless given)."""
    return write_error_record(
        blobs,
        container,
        input_name=record.input_name,
        input_container=record.input_container,
        input_etag=record.etag,
        request_id=record.request_id,
        attempt=record.attempt if attempt is None else attempt,
        code=code,
        message=message,
        rows_scored=record.rows_scored or 0,
        rows_failed=record.rows_failed or 0,
        now=now,
    )


def write_unreadable_message(
    blobs: BlobStore, container: str, *, message_id: str, body: bytes, reason: str, now: datetime
) -> str:
    """Keeps a request message whose body is not a request, with why, and returns its location. Written again
    (same name) when the message is delivered again."""
    safe_id = _MESSAGE_ID_UNSAFE.sub("_", message_id)[:200] or hashlib.sha256(body).hexdigest()
    name = f"{UNREADABLE_PREFIX}{safe_id}.message.json"
    try:
        text: dict[str, str] = {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        text = {"base64": base64.b64encode(body).decode("ascii")}
    document = {
        "schema": ERROR_SCHEMA,
        "version": 1,
        "request_id": None,
        "input": None,
        "error": {"code": ErrorCode.INVALID_REQUEST.value, "message": reason},
        "message": {"message_id": message_id, "body": text},
        "recorded_at": iso(now),
    }
    data = json.dumps(document, indent=2, sort_keys=True).encode()
    blobs.write(container, name, data, content_type="application/json", metadata={"code": ErrorCode.INVALID_REQUEST})
    return f"{container}/{name}"


def remove_superseded_error(
    blobs: BlobStore,
    container: str,
    *,
    input_container: str,
    input_name: str,
    request_id: str,
    input_etag: str | None,
) -> bool:
    """After an output was written: removes an error record it supersedes; True if one was removed."""
    name = error_blob_name(input_name)
    record = properties_or_none(blobs, container, name)
    if record is None:
        return False
    own = record.metadata.get(META_REQUEST_ID) == request_id
    if not own and not _is_current(blobs, input_container, input_name, input_etag):
        return False
    logger.info("error record %s/%s superseded by the output of %s", container, name, request_id)
    return _delete_if_unchanged(blobs, container, name, record.etag)


def output_may_replace(blobs: BlobStore, *, input_container: str, input_name: str, input_etag: str | None) -> bool:
    """Whether a success may replace a different output already there: for the input's current version, or for
    a request whose version is not known (as before versions were compared)."""
    return input_etag is None or _is_current(blobs, input_container, input_name, input_etag)


def _stale_beside_output(
    blobs: BlobStore, container: str, input_container: str | None, input_name: str, input_etag: str | None
) -> bool:
    """An output exists for the input and this request's version of the input is gone or replaced."""
    if name_problem(input_name) is not None or input_container is None or input_etag is None:
        return False  # no output can exist for a refused name; an unknown version is taken as current
    if properties_or_none(blobs, container, output_blob_name(input_name)) is None:
        return False
    return not _is_current(blobs, input_container, input_name, input_etag)


def _is_current(blobs: BlobStore, input_container: str, input_name: str, input_etag: str | None) -> bool:
    if input_etag is None:
        return False
    current = properties_or_none(blobs, input_container, input_name)
    return current is not None and current.etag.strip('"') == input_etag.strip('"')


def _delete_if_unchanged(blobs: BlobStore, container: str, name: str, etag: str) -> bool:
    try:
        blobs.delete(container, name, if_match=etag)
    except PreconditionFailed:
        return False  # replaced meanwhile by a newer record: that one decides
    return True
