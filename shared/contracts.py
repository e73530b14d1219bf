"""Message contracts shared by the function app, the scoring service and the client.

Three JSON documents cross process boundaries, each carrying ``"schema"`` and ``"version"``:

* :class:`InferenceRequest`: published by ``submit_blob`` to the ``inference-requests`` topic
  (``message_id = request_id``, ``session_id`` = the client's session, application properties
  ``model`` and ``content_type`` for subscription rules).
* :class:`AsyncScoringRequest`: the body ``score_request`` POSTs to the endpoint's scoring route.
* :class:`AsyncScoringBatch`: several small files for one model in one POST (each file an
  :class:`AsyncScoringRequest` with its own reply session); the endpoint answers 202 with an
  :class:`AsyncScoringBatchReply` saying, file by file, whether it was accepted, a duplicate or rejected.
* :class:`InferenceResult`: published by the scoring service to the ``inference-results`` topic on
  the reply session (``message_id`` from :meth:`InferenceResult.message_id`, so a re-delivery of the
  same attempt is de-duplicated by the broker).

A small input (up to :data:`INLINE_INPUT_MAX_BYTES`) travels inline too: ``submit_blob`` reads it in the one
request that gives it the blob's properties, and the request carries its bytes (base64, ``input_b64``) to the
endpoint, which then does not read the blob again. ``blob_url`` is always there as well: an endpoint that does not
know ``input_b64`` reads the blob, and a resubmission by ``reconcile`` carries no bytes.

Results of any size stay under the broker's 256 KB message limit: a scored output up to
:data:`INLINE_OUTPUT_MAX_BYTES` travels inline (base64) in the result message; a larger one is written
by the scoring service to its results container as one blob and the message carries its URL, size and
SHA-256. Either way the output bytes are the final file (the input rows plus the model's output
columns, in the input's format), so the writer only stores them.

Output columns by model kind (the same in sync JSON answers, CSV / JSON Lines outputs and result
messages; :data:`PREDICTION_COLUMN`, :data:`PROBABILITY_COLUMN`):

==========================================  ================================================================
Model                                       Columns added to each row
==========================================  ================================================================
classifier (has ``predict_proba``), any     ``prediction``: the label, with the model's own type (string,
label type, any number of classes           integer, boolean); ``probability``: the probability of that label.
                                            With ``SCORING_CLASS_PROBABILITIES=true`` also
                                            ``probability_<label>`` for every class, in the model's order.
regressor, or any model without             ``prediction`` (``prediction_<i>`` per output for a model with
``predict_proba``                           several outputs)
pyfunc returning a DataFrame or a dict      those columns, with their names and values as returned
of columns
pyfunc returning a list / array / Series    ``prediction``
==========================================  ================================================================

Labels and names are written with CSV quoting and JSON escaping (a comma, a quote or a newline in a
label round-trips); numbers as the shortest text that reads back to the same value.

This module is deliberately standard-library only: the scoring image, the function app and the
client all import it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1

REQUEST_SCHEMA = "inference-request"
SCORING_REQUEST_SCHEMA = "async-scoring-request"
SCORING_BATCH_SCHEMA = "async-scoring-batch"
SCORING_BATCH_REPLY_SCHEMA = "async-scoring-batch-reply"
MAX_BATCH_REQUESTS = 1000  # files in one AsyncScoringBatch
RESULT_SCHEMA = "inference-result"

# Base64 grows data by 4/3: 160 KiB of output becomes ~214 KiB, leaving room for the JSON envelope
# and AMQP overhead under the 256 KB Standard-tier limit.
INLINE_OUTPUT_MAX_BYTES = 160 * 1024
# An input this size (~87 KiB of base64) leaves a request message far under the broker's 256 KB limit.
INLINE_INPUT_MAX_BYTES = 64 * 1024
# Base64 characters of inline inputs in one AsyncScoringBatch: the files past it are sent by URL only, so a POST
# of many small files stays about a megabyte.
BATCH_INLINE_MAX_CHARS = 1024 * 1024
MAX_ROW_ERRORS_REPORTED = 20
MAX_CONTEXT_CHARS = 4096  # AsyncScoringRequest.context, returned in the result message (under its 256 KB)

PREDICTION_COLUMN = "prediction"
PROBABILITY_COLUMN = "probability"  # of the predicted label; per class: f"{PROBABILITY_COLUMN}_{label}"

# Application property names that subscription rules filter on.
PROP_MODEL = "model"
PROP_CONTENT_TYPE = "content_type"
PROP_STATUS = "status"
PROP_REQUEST_ID = "request_id"

DEFAULT_MODEL = "default"


class ContractError(ValueError):
    """A message does not follow its contract (wrong schema, version, or a missing/invalid field)."""


class DataFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self]


CONTENT_TYPES: dict[DataFormat, str] = {
    DataFormat.CSV: "text/csv",
    DataFormat.JSONL: "application/x-ndjson",
    DataFormat.PARQUET: "application/vnd.apache.parquet",
}

GZIP = "gzip"


class RequestState(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ResultStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ErrorCode(StrEnum):
    """Stable error codes written into result messages and error records."""

    INVALID_NAME = "invalid_name"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_LARGE = "too_large"
    EMPTY_FILE = "empty_file"
    HEADER_ONLY = "header_only"
    MISSING_COLUMNS = "missing_columns"
    UNEXPECTED_COLUMNS = "unexpected_columns"
    DUPLICATE_COLUMNS = "duplicate_columns"
    MALFORMED_DATA = "malformed_data"
    UNDECODABLE = "undecodable"
    NO_VALID_ROWS = "no_valid_rows"
    BLOB_NOT_FOUND = "blob_not_found"
    BLOB_FORBIDDEN = "blob_forbidden"
    BLOB_URL_NOT_ALLOWED = "blob_url_not_allowed"
    INPUT_UNAVAILABLE = "input_unavailable"  # the input's storage failed (5xx) or did not answer: try again later
    INVALID_REQUEST = "invalid_request"
    ENDPOINT_REJECTED = "endpoint_rejected"
    ENDPOINT_UNAVAILABLE = "endpoint_unavailable"
    UNKNOWN_MODEL = "unknown_model"
    RESULT_TIMEOUT = "result_timeout"
    INTERNAL = "internal_error"


# Failures that say nothing about the file itself: the function app leaves such a request to reconcile, which
# submits it again after the result deadline, instead of recording an error for a file that may be fine.
TRANSIENT_ERRORS = frozenset({ErrorCode.INPUT_UNAVAILABLE})


def iso(moment: datetime) -> str:
    """The timestamp format of every document here: UTC, milliseconds, ``Z``."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def utc_now_iso() -> str:
    return iso(datetime.now(UTC))


def derive_request_id(container: str, blob_name: str, etag: str) -> str:
    """Request id for one version of one blob: a re-fired trigger for the same ETag gets the same id."""
    key = f"{container}\n{blob_name}\n{etag.strip(chr(34))}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def detect_format(blob_name: str) -> tuple[DataFormat, str | None] | None:
    """Format and compression from the name (``.csv``, ``.jsonl``/``.ndjson``, ``.parquet``, optional ``.gz``)."""
    lower = blob_name.lower()
    compression = None
    if lower.endswith(".gz"):
        compression = GZIP
        lower = lower[: -len(".gz")]
    if lower.endswith(".csv"):
        return DataFormat.CSV, compression
    if lower.endswith((".jsonl", ".ndjson")):
        return DataFormat.JSONL, compression
    if lower.endswith(".parquet"):
        return DataFormat.PARQUET, compression
    return None


def output_blob_name(input_name: str) -> str:
    """The scored output keeps the input's name (and format) in the output container."""
    return input_name


def error_blob_name(input_name: str) -> str:
    return f"errors/{input_name}.error.json"


# --------------------------------------------------------------------------------------------------
# helpers for (de)serialising frozen dataclasses


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ContractError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ContractError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


def _optional(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if data.get(key) is None:
        return None
    return _require(data, key, kind, where)


def decode_base64(text: str, what: str) -> bytes:
    """Strict base64 (no stray characters); raises ContractError naming the field."""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ContractError(f"{what} is not valid base64 ({exc})") from exc


def _load_object(raw: bytes | str | Mapping[str, Any], schema: str) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        data = raw
    else:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractError(f"{schema}: body is not JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise ContractError(f"{schema}: body must be a JSON object")
    if data.get("schema") != schema:
        raise ContractError(f"expected schema {schema!r}, got {data.get('schema')!r}")
    version = data.get("version")
    if version != SCHEMA_VERSION:
        raise ContractError(f"{schema}: unsupported version {version!r} (this code speaks {SCHEMA_VERSION})")
    return data


def _dump(schema: str, obj: Any) -> bytes:
    body = {"schema": schema, "version": SCHEMA_VERSION, **asdict(obj)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _format(data: Mapping[str, Any], where: str) -> DataFormat:
    value = _require(data, "format", str, where)
    try:
        return DataFormat(value)
    except ValueError as exc:
        raise ContractError(f"{where}: format must be one of {[f.value for f in DataFormat]}") from exc


def _compression(data: Mapping[str, Any], where: str) -> str | None:
    value = _optional(data, "compression", str, where)
    if value not in (None, GZIP):
        raise ContractError(f"{where}: compression must be null or {GZIP!r}")
    return value


# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceRequest:
    """One input blob to score; the body of a message on the request topic."""

    request_id: str
    container: str
    blob_name: str
    blob_url: str
    etag: str
    size: int
    format: DataFormat
    compression: str | None
    session_id: str
    model: str
    submitted_at: str
    attempt: int = 1
    # The ETag of the ledger record ``submit`` created for this request, so ``score_request`` can write
    # ``accepted`` against it without reading the record first (:mod:`shared.score`). Only the message of the
    # submit that created the record carries it; resubmissions and older messages have none and read.
    ledger_etag: str | None = None
    # The whole file (base64) when it is at most INLINE_INPUT_MAX_BYTES; kept out of repr, so no log line holds it.
    input_b64: str | None = field(default=None, repr=False)

    @property
    def content_type(self) -> str:
        return self.format.content_type

    @property
    def message_id(self) -> str:
        """Attempt 1 uses the request id itself, so a re-fired trigger is dropped by duplicate detection."""
        return self.request_id if self.attempt == 1 else f"{self.request_id}:{self.attempt}"

    def retry_message_id(self, retry: int) -> str:
        """The id of the ``retry``-th scheduled copy of this attempt (a re-run schedules the same id)."""
        return f"{self.request_id}:{self.attempt}:retry{retry}"

    def application_properties(self) -> dict[str, str]:
        return {PROP_MODEL: self.model, PROP_CONTENT_TYPE: self.content_type, PROP_REQUEST_ID: self.request_id}

    def to_json(self) -> bytes:
        return _dump(REQUEST_SCHEMA, self)

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any]) -> InferenceRequest:
        data = _load_object(raw, REQUEST_SCHEMA)
        where = REQUEST_SCHEMA
        return cls(
            request_id=_require(data, "request_id", str, where),
            container=_require(data, "container", str, where),
            blob_name=_require(data, "blob_name", str, where),
            blob_url=_require(data, "blob_url", str, where),
            etag=_require(data, "etag", str, where),
            size=_require(data, "size", int, where),
            format=_format(data, where),
            compression=_compression(data, where),
            session_id=_require(data, "session_id", str, where),
            model=_require(data, "model", str, where),
            submitted_at=_require(data, "submitted_at", str, where),
            attempt=_require(data, "attempt", int, where),
            ledger_etag=_optional(data, "ledger_etag", str, where),
            input_b64=_optional(data, "input_b64", str, where),
        )


@dataclass(frozen=True)
class ReplyTo:
    topic: str
    session_id: str


@dataclass(frozen=True)
class AsyncScoringRequest:
    """Body POSTed to the endpoint's scoring route in async mode (answered with 202 at once)."""

    request_id: str
    blob_url: str
    reply: ReplyTo
    input_name: str
    format: DataFormat
    compression: str | None = None
    model: str = DEFAULT_MODEL
    attempt: int = 1
    mode: str = field(default="async")
    # The file's own trace (W3C traceparent): in a batch the POST's header carries one trace for all its files.
    traceparent: str | None = None
    # The caller's own state for this file, opaque to the endpoint and returned unchanged in the file's
    # InferenceResult (at most MAX_CONTEXT_CHARS): ``score_request`` hands the ledger record to the writer in it.
    context: str | None = None
    # The whole input (base64) when the caller has it; the endpoint then does not read ``blob_url``.
    input_b64: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.context is not None and len(self.context) > MAX_CONTEXT_CHARS:
            raise ContractError(f"{SCORING_REQUEST_SCHEMA}: context is {len(self.context)} characters, at most "
                                f"{MAX_CONTEXT_CHARS}")  # fmt: skip

    def to_json(self) -> bytes:
        return _dump(SCORING_REQUEST_SCHEMA, self)

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any]) -> AsyncScoringRequest:
        return cls.from_fields(_load_object(raw, SCORING_REQUEST_SCHEMA), SCORING_REQUEST_SCHEMA)

    @classmethod
    def from_fields(cls, data: Mapping[str, Any], where: str) -> AsyncScoringRequest:
        """The request from its fields (a document of its own, or one entry of an :class:`AsyncScoringBatch`)."""
        if data.get("mode") != "async":
            raise ContractError(f"{where}: mode must be 'async'")
        reply = _require(data, "reply", Mapping, where)
        return cls(
            request_id=_require(data, "request_id", str, where),
            blob_url=_require(data, "blob_url", str, where),
            reply=ReplyTo(
                topic=_require(reply, "topic", str, f"{where}.reply"),
                session_id=_require(reply, "session_id", str, f"{where}.reply"),
            ),
            input_name=_require(data, "input_name", str, where),
            format=_format(data, where),
            compression=_compression(data, where),
            model=_optional(data, "model", str, where) or DEFAULT_MODEL,
            attempt=_optional(data, "attempt", int, where) or 1,
            traceparent=_optional(data, "traceparent", str, where),
            context=_optional(data, "context", str, where),
            input_b64=_optional(data, "input_b64", str, where),
        )

    def input_bytes(self) -> bytes | None:
        """The inline input, or None when the input is to be read from ``blob_url``; raises ContractError."""
        return None if self.input_b64 is None else decode_base64(self.input_b64, "input_b64")


@dataclass(frozen=True)
class AsyncScoringBatch:
    """Several small files for one model, POSTed as one async request: the endpoint queues them as one job and
    publishes one :class:`InferenceResult` per file, each on its own reply session."""

    model: str
    requests: tuple[AsyncScoringRequest, ...]
    mode: str = field(default="async")

    def __post_init__(self) -> None:
        if not 1 <= len(self.requests) <= MAX_BATCH_REQUESTS:
            raise ContractError(f"{SCORING_BATCH_SCHEMA}: 1 to {MAX_BATCH_REQUESTS} requests, got {len(self.requests)}")
        if any(r.model != self.model for r in self.requests):
            raise ContractError(f"{SCORING_BATCH_SCHEMA}: every request must be for model {self.model!r}")

    def to_json(self) -> bytes:
        return _dump(SCORING_BATCH_SCHEMA, self)

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any]) -> AsyncScoringBatch:
        data = _load_object(raw, SCORING_BATCH_SCHEMA)
        where = SCORING_BATCH_SCHEMA
        if data.get("mode") != "async":
            raise ContractError(f"{where}: mode must be 'async'")
        model = _require(data, "model", str, where)
        entries = _require(data, "requests", list, where)
        requests = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise ContractError(f"{where}.requests[{i}]: each entry must be an object")
            fields = {"model": model, "mode": "async", **entry}
            requests.append(AsyncScoringRequest.from_fields(fields, f"{where}.requests[{i}]"))
        return cls(model=model, requests=tuple(requests))


class Admission(StrEnum):
    """What the endpoint did with one file of an :class:`AsyncScoringBatch`."""

    ACCEPTED = "accepted"  # queued: its result will be published
    DUPLICATE = "duplicate"  # the same request_id and attempt was already queued, running or done
    REJECTED = "rejected"  # refused for good (``code``, ``message``): no result will be published


@dataclass(frozen=True)
class FileAdmission:
    request_id: str
    attempt: int
    status: Admission
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class AsyncScoringBatchReply:
    """The 202 answer to an :class:`AsyncScoringBatch`: one admission per file, in the request's order."""

    admissions: tuple[FileAdmission, ...]

    def to_json(self) -> bytes:
        return _dump(SCORING_BATCH_REPLY_SCHEMA, self)

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any]) -> AsyncScoringBatchReply:
        data = _load_object(raw, SCORING_BATCH_REPLY_SCHEMA)
        where = SCORING_BATCH_REPLY_SCHEMA
        admissions = []
        for i, entry in enumerate(_require(data, "admissions", list, where)):
            w = f"{where}.admissions[{i}]"
            if not isinstance(entry, Mapping):
                raise ContractError(f"{w}: each entry must be an object")
            status = _require(entry, "status", str, w)
            try:
                admission = Admission(status)
            except ValueError as exc:
                raise ContractError(f"{w}: unknown status {status!r}") from exc
            admissions.append(
                FileAdmission(
                    request_id=_require(entry, "request_id", str, w),
                    attempt=_require(entry, "attempt", int, w),
                    status=admission,
                    code=_optional(entry, "code", str, w),
                    message=_optional(entry, "message", str, w),
                )
            )
        return cls(admissions=tuple(admissions))


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row number (the header is not counted)
    message: str


def _row_error(raw: Any, where: str) -> RowError:
    if not isinstance(raw, Mapping):
        raise ContractError(f"{where}: each entry must be an object")
    return RowError(row=_require(raw, "row", int, where), message=_require(raw, "message", str, where))


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str


@dataclass(frozen=True)
class OutputRef:
    """Where the scored output is: inline (base64) or in a blob; ``sha256`` is of the output bytes."""

    format: DataFormat
    compression: str | None
    size: int
    sha256: str
    inline_b64: str | None = None
    blob_url: str | None = None

    @classmethod
    def inline(cls, data: bytes, fmt: DataFormat, compression: str | None) -> OutputRef:
        return cls(
            format=fmt,
            compression=compression,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            inline_b64=base64.b64encode(data).decode("ascii"),
        )

    def inline_bytes(self) -> bytes:
        if self.inline_b64 is None:
            raise ContractError("output is not inline")
        data = decode_base64(self.inline_b64, "output.inline_b64")
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ContractError("output.inline_b64 does not match output.sha256")
        return data


@dataclass(frozen=True)
class InferenceResult:
    """Outcome of one request; the body of a message on the result topic."""

    request_id: str
    status: ResultStatus
    input_name: str
    model: str
    rows_scored: int = 0
    rows_failed: int = 0
    row_errors: tuple[RowError, ...] = ()
    error: ErrorInfo | None = None
    output: OutputRef | None = None
    completed_at: str = field(default_factory=utc_now_iso)
    attempt: int = 1
    context: str | None = None  # the request's context, unchanged

    def __post_init__(self) -> None:
        if self.status == ResultStatus.SUCCEEDED and self.output is None:
            raise ContractError("a succeeded result needs an output")
        if self.status == ResultStatus.FAILED and self.error is None:
            raise ContractError("a failed result needs an error")

    @classmethod
    def for_request(
        cls,
        request: AsyncScoringRequest,
        *,
        output: OutputRef | None = None,
        error: ErrorInfo | None = None,
        rows_scored: int = 0,
        rows_failed: int = 0,
        row_errors: tuple[RowError, ...] = (),
    ) -> InferenceResult:
        """The result of ``request``: succeeded with ``output``, or failed with ``error``."""
        return cls(
            request_id=request.request_id,
            status=ResultStatus.SUCCEEDED if error is None else ResultStatus.FAILED,
            input_name=request.input_name,
            model=request.model,
            rows_scored=rows_scored,
            rows_failed=rows_failed,
            row_errors=row_errors,
            error=error,
            output=output,
            attempt=request.attempt,
            context=request.context,
        )

    @property
    def message_id(self) -> str:
        return f"{self.request_id}:result:{self.attempt}"

    def application_properties(self) -> dict[str, str]:
        return {PROP_STATUS: self.status.value, PROP_REQUEST_ID: self.request_id, PROP_MODEL: self.model}

    def to_json(self) -> bytes:
        return _dump(RESULT_SCHEMA, self)

    @classmethod
    def from_json(cls, raw: bytes | str | Mapping[str, Any]) -> InferenceResult:
        data = _load_object(raw, RESULT_SCHEMA)
        where = RESULT_SCHEMA
        status_raw = _require(data, "status", str, where)
        try:
            status = ResultStatus(status_raw)
        except ValueError as exc:
            raise ContractError(f"{where}: unknown status {status_raw!r}") from exc
        error_raw = _optional(data, "error", Mapping, where)
        output_raw = _optional(data, "output", Mapping, where)
        rows_raw = _optional(data, "row_errors", list, where) or []
        output = None
        if output_raw is not None:
            w = f"{where}.output"
            output = OutputRef(
                format=_format(output_raw, w),
                compression=_compression(output_raw, w),
                size=_require(output_raw, "size", int, w),
                sha256=_require(output_raw, "sha256", str, w),
                inline_b64=_optional(output_raw, "inline_b64", str, w),
                blob_url=_optional(output_raw, "blob_url", str, w),
            )
            if (output.inline_b64 is None) == (output.blob_url is None):
                raise ContractError(f"{w}: exactly one of inline_b64 and blob_url must be set")
        return cls(
            request_id=_require(data, "request_id", str, where),
            status=status,
            input_name=_require(data, "input_name", str, where),
            model=_require(data, "model", str, where),
            rows_scored=_require(data, "rows_scored", int, where),
            rows_failed=_require(data, "rows_failed", int, where),
            row_errors=tuple(_row_error(r, f"{where}.row_errors") for r in rows_raw),
            error=None
            if error_raw is None
            else ErrorInfo(
                code=_require(error_raw, "code", str, f"{where}.error"),
                message=_require(error_raw, "message", str, f"{where}.error"),
            ),
            output=output,
            completed_at=_require(data, "completed_at", str, where),
            attempt=_require(data, "attempt", int, where),
            context=_optional(data, "context", str, where),
        )
