"""The scoring service behind the AML entry script: routes a request body to sync or async handling.

A ``text/csv`` body is a sync CSV request, answered in CSV. A JSON body is async when it says
``"mode": "async"`` or carries the ``async-scoring-request`` schema; it is then validated (contract,
reply topic, model name, input name) and queued, and answered 202 at once. An ``async-scoring-batch``
body carries several small files: each is validated on its own and the accepted ones are queued as one
job, answered 202 with one admission per file. Every other JSON body is a
sync request. Every outcome is a :class:`Reply` (status, body, headers), so the HTTP layer stays a
one-liner.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec

from scoring.service.dispatcher import Dispatcher
from scoring.service.errors import RequestRejected
from scoring.service.heap import return_large_buffers
from scoring.service.job import ScoringJob
from scoring.service.model import ScoringModel, limit_native_threads, load_model
from scoring.service.publisher import ServiceBusPublisher
from scoring.service.settings import ScoringSettings
from scoring.service.storage import BlobUrlRefused, ResultsStore, check_input_url, input_accounts
from scoring.service.sync_api import score_csv_body, score_sync
from scoring.service.validation import Validator
from shared.blobnames import name_problem
from shared.contracts import (
    MAX_ROW_ERRORS_REPORTED,
    SCORING_BATCH_SCHEMA,
    SCORING_REQUEST_SCHEMA,
    Admission,
    AsyncScoringBatch,
    AsyncScoringBatchReply,
    AsyncScoringRequest,
    ContractError,
    ErrorCode,
    FileAdmission,
)
from shared.retry import RESULT_PUBLISH
from shared.telemetry import pipeline

logger = logging.getLogger(__name__)

_DECODER = msgspec.json.Decoder()

MODE_KEY = "mode"
SCHEMA_KEY = "schema"
MODE_ASYNC = "async"
MODE_SYNC = "sync"
JSON_HEADERS = {"Content-Type": "application/json"}
CSV_HEADERS = {"Content-Type": "text/csv; charset=utf-8"}
CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv"})


@dataclass(frozen=True)
class Reply:
    status: int
    body: str | bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))


def _json_reply(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload), {**JSON_HEADERS, **(headers or {})})


def _parse_json(raw: bytes | str) -> Any:
    """The JSON body, read by msgspec (about twice as fast as the json module on row-shaped bodies).

    msgspec refuses a few things the json module reads (NaN and Infinity, numbers beyond float range,
    lone surrogates); those bodies, and bad ones, go through the json module as before, so what is
    accepted and how a bad body is described do not change.
    """
    try:
        return _DECODER.decode(raw)
    except ValueError:  # msgspec's errors and UnicodeDecodeError
        pass
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise RequestRejected(400, f"the request body is not JSON ({exc})") from exc


class ScoringService:
    def __init__(self, settings: ScoringSettings, model: ScoringModel, dispatcher: Dispatcher | None) -> None:
        self.settings = settings
        self.model = model
        self.validator = Validator(model.spec, MAX_ROW_ERRORS_REPORTED)
        self.dispatcher = dispatcher

    @classmethod
    def start(cls, settings: ScoringSettings) -> ScoringService:
        return_large_buffers()
        model = load_model(
            settings.model_dir, class_probabilities=settings.class_probabilities, predict_parts=settings.predict_parts
        )
        limit_native_threads(settings.model_threads)  # this thread answers the sync requests
        dispatcher = None
        if settings.async_enabled:

            def make_processor() -> Any:
                limit_native_threads(settings.model_threads)  # runs in the worker thread that predicts
                store = ResultsStore(settings)  # one storage client per worker thread
                return ScoringJob(settings, model, store.blob).run

            dispatcher = Dispatcher(
                workers=settings.workers,
                queue_size=settings.queue_size,
                dedupe_entries=settings.dedupe_entries,
                retry_after_seconds=settings.retry_after_seconds,
                publish_retry=RESULT_PUBLISH.with_tries(settings.publish_attempts),
                make_processor=make_processor,
                make_publisher=lambda: ServiceBusPublisher(settings),
            )
        else:
            logger.warning(
                "async scoring is off: set RESULT_SERVICEBUS_CONNECTION or RESULT_SERVICEBUS_NAMESPACE to enable it"
            )
        logger.info("scoring service ready: %s", settings)
        return cls(settings, model, dispatcher)

    def handle(self, raw: bytes | str, media_type: str = "application/json") -> Reply:
        """Answer one request body; ``media_type`` is the Content-Type without parameters (JSON unless CSV)."""
        try:
            if media_type in CSV_MEDIA_TYPES:
                return Reply(
                    200, score_csv_body(raw, self.model, self.validator, self.settings.max_sync_rows), CSV_HEADERS
                )
            body = _parse_json(raw)
            if not isinstance(body, dict):
                raise RequestRejected(400, "the request body must be a JSON object")
            if body.get(SCHEMA_KEY) == SCORING_BATCH_SCHEMA:
                return self._submit_batch(body)
            if body.get(MODE_KEY) == MODE_ASYNC or body.get(SCHEMA_KEY) == SCORING_REQUEST_SCHEMA:
                return self._submit(body)
            if body.get(MODE_KEY, MODE_SYNC) != MODE_SYNC:
                raise RequestRejected(400, f"{MODE_KEY!r} must be {MODE_SYNC!r} or {MODE_ASYNC!r}")
            return Reply(200, score_sync(body, self.model, self.validator, self.settings.max_sync_rows))
        except RequestRejected as exc:
            return _json_reply(exc.status, {"message": exc.message, **exc.details}, exc.headers)

    def _check(self, request: AsyncScoringRequest) -> None:
        """Refuses (400, with a stable code) a request this deployment cannot take."""
        s = self.settings
        if request.reply.topic != s.result_topic:
            raise RequestRejected(
                400, f"reply.topic must be {s.result_topic!r}, got {request.reply.topic!r}",
                details={"code": ErrorCode.INVALID_REQUEST.value},
            )  # fmt: skip
        if request.model != s.model_name:
            raise RequestRejected(
                400, f"this deployment serves model {s.model_name!r}, not {request.model!r}",
                details={"code": ErrorCode.UNKNOWN_MODEL.value},
            )  # fmt: skip
        if problem := name_problem(request.input_name):
            raise RequestRejected(
                400,
                f"input_name is not an acceptable blob name: {problem}",
                details={"code": ErrorCode.INVALID_NAME.value},
            )
        try:
            check_input_url(request.blob_url, input_accounts(s))
        except BlobUrlRefused as exc:
            raise RequestRejected(400, str(exc), details={"code": ErrorCode.BLOB_URL_NOT_ALLOWED.value}) from exc

    def _dispatcher(self) -> Dispatcher:
        if self.dispatcher is None:
            raise RequestRejected(
                503, "async scoring is not configured on this deployment (RESULT_SERVICEBUS_CONNECTION is not set)"
            )
        return self.dispatcher

    def _submit(self, body: dict[str, Any]) -> Reply:
        try:
            request = AsyncScoringRequest.from_json(body)
        except ContractError as exc:
            raise RequestRejected(400, str(exc), details={"code": ErrorCode.INVALID_REQUEST.value}) from exc
        self._check(request)
        dispatcher = self._dispatcher()
        # Noted before queueing: a worker may start on the request before submit() returns.
        pipeline.accepted(request.request_id, request.attempt, request.input_name, request.model, request.traceparent)
        earlier = dispatcher.submit(request)
        payload: dict[str, Any] = {"request_id": request.request_id, "attempt": request.attempt, "status": "accepted"}
        if earlier is not None:
            payload["duplicate_of"] = earlier.value
        return _json_reply(202, payload)

    def _submit_batch(self, body: dict[str, Any]) -> Reply:
        """Several files in one request: each file is checked on its own (a refused one is answered ``rejected``
        with its code, the others go ahead); the accepted ones are queued together as one job, or, when the
        queue is full, none of them is (429), so the caller retries the whole batch."""
        try:
            batch = AsyncScoringBatch.from_json(body)
        except ContractError as exc:
            raise RequestRejected(400, str(exc), details={"code": ErrorCode.INVALID_REQUEST.value}) from exc
        if batch.model != self.settings.model_name:
            raise RequestRejected(
                400, f"this deployment serves model {self.settings.model_name!r}, not {batch.model!r}",
                details={"code": ErrorCode.UNKNOWN_MODEL.value},
            )  # fmt: skip
        dispatcher = self._dispatcher()
        rejected: dict[int, FileAdmission] = {}
        admitted: list[AsyncScoringRequest] = []
        for i, request in enumerate(batch.requests):
            try:
                self._check(request)
            except RequestRejected as exc:
                code = str(exc.details.get("code", ErrorCode.INVALID_REQUEST.value))
                rejected[i] = FileAdmission(request.request_id, request.attempt, Admission.REJECTED, code, exc.message)
            else:
                admitted.append(request)
        for request in admitted:
            pipeline.accepted(
                request.request_id, request.attempt, request.input_name, request.model, request.traceparent
            )
        earlier = iter(dispatcher.submit_group(admitted))
        admissions = []
        for i, request in enumerate(batch.requests):
            if i in rejected:
                admissions.append(rejected[i])
                continue
            status = Admission.ACCEPTED if next(earlier) is None else Admission.DUPLICATE
            admissions.append(FileAdmission(request.request_id, request.attempt, status))
        return Reply(202, AsyncScoringBatchReply(tuple(admissions)).to_json())
