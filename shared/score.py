"""Use case ``score``: hand one :class:`InferenceRequest` to the scoring endpoint as an async request.

Outcomes by the endpoint's answer:

* 2xx: the endpoint accepted the work; the ledger says ``accepted``, which restarts the result deadline
  that ``reconcile`` watches.
* throttled or unreachable (429, 503, other 5xx/408, connection errors, timeouts): a copy of the message
  is *scheduled* on the request topic for later (Retry-After honoured, else exponential back-off with a
  cap) and the function returns normally, so the trigger completes the original. The copy is sent
  first: if the function dies before returning, the original is delivered again and schedules a copy
  with the same message id, which the topic's duplicate detection drops. Throttling therefore never
  uses up the subscription's delivery count and never dead-letters work.
* permanent rejection (400, 401, 403, 404, other 4xx): an error record and a failed ledger entry are
  written first, then :class:`DeadLetter` is raised. With ``autoCompleteMessages`` the Python function
  cannot settle the message itself and the output binding cannot reach a dead-letter queue, so the host
  abandons it and the broker redelivers it; each redelivery finds the ledger's dead-letter mark and raises
  again at once (no HTTP call), so after ``MaxDeliveryCount`` quick deliveries the broker moves it to the
  subscription's dead-letter queue, while the error record says why.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.contracts import AsyncScoringRequest, ErrorCode, InferenceRequest, ReplyTo, RequestState, iso
from shared.errors import record_error
from shared.ledger import Ledger, LedgerRecord, accepted, failed
from shared.messages import retry_message
from shared.ports import BlobStore, EndpointReply, MessageBus, ScoringEndpoint
from shared.settings import ScoringRoute, Settings

logger = logging.getLogger(__name__)


class ScoreOutcome(StrEnum):
    ACCEPTED = "accepted"
    RESCHEDULED = "rescheduled"
    GAVE_UP = "gave_up"
    SKIPPED = "skipped"


class DeadLetter(Exception):
    """Raised so the host abandons the message until the broker dead-letters it (see the module docstring)."""


@dataclass(frozen=True)
class Delivery:
    """The parts of a received request message this use case needs."""

    body: bytes
    message_id: str
    delivery_count: int
    scoring_retry: int


def classify_rejection(reply: EndpointReply) -> tuple[str, str]:
    """Error code and message for a permanent rejection; the endpoint's own JSON error wins if present
    (``{"code", "message"}`` at the top level or under ``"error"``)."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = None
    if isinstance(body, dict):
        nested = body.get("error")
        error: dict[str, Any] = nested if isinstance(nested, dict) else body
        if isinstance(error.get("code"), str):
            return error["code"], str(error.get("message", ""))[:500]
    code = ErrorCode.INVALID_REQUEST if reply.status == 400 else ErrorCode.ENDPOINT_REJECTED
    return code, f"scoring endpoint answered HTTP {reply.status}: {reply.body[:300]}"


def score_request(
    delivery: Delivery,
    *,
    route: ScoringRoute,
    settings: Settings,
    blobs: BlobStore,
    bus: MessageBus,
    endpoint: ScoringEndpoint,
    ledger: Ledger,
    now: datetime,
    rng: random.Random | None = None,
) -> ScoreOutcome:
    request = InferenceRequest.from_json(delivery.body)
    # The record as read here is what "accepted" is written against (one read for the whole step).
    record, etag = ledger.read(request.request_id)
    if record is not None:
        if record.dead_letter_reason and record.attempt == request.attempt:
            raise DeadLetter(f"request {request.request_id}: {record.dead_letter_reason}")
        if record.terminal or record.attempt > request.attempt:
            logger.info("request %s is %s (attempt %s); skipping attempt %s", request.request_id, record.state,
                        record.attempt, request.attempt)  # fmt: skip
            return ScoreOutcome.SKIPPED
        if record.state == RequestState.ACCEPTED and record.attempt == request.attempt:
            logger.info("request %s attempt %s was already accepted", request.request_id, request.attempt)
            return ScoreOutcome.SKIPPED
    if request.model != route.model:
        logger.warning("request %s for model %s reached route %s", request.request_id, request.model, route.model)
    sas_url = blobs.read_sas_url(request.container, request.blob_name, timedelta(minutes=settings.sas_ttl_minutes))
    body = AsyncScoringRequest(
        request_id=request.request_id,
        blob_url=sas_url,
        reply=ReplyTo(topic=settings.result_topic, session_id=request.session_id),
        input_name=request.blob_name,
        format=request.format,
        compression=request.compression,
        model=request.model,
        attempt=request.attempt,
    ).to_json()
    reply = endpoint.post(body)
    if 200 <= reply.status < 300:
        transition = accepted(request, now, delivery.scoring_retry)
        ledger.advance(request.request_id, transition, now=now, known=(record, etag))
        logger.info("request %s attempt %s accepted by %s", request.request_id, request.attempt, route.model)
        return ScoreOutcome.ACCEPTED
    if reply.transient:
        if settings.scoring_retry.gives_up(delivery.scoring_retry):
            message = f"scoring endpoint still unavailable after {delivery.scoring_retry} retries (HTTP {reply.status})"
            _fail(request, ErrorCode.ENDPOINT_UNAVAILABLE, message, None, settings, blobs, ledger, now)
            return ScoreOutcome.GAVE_UP
        delay = settings.scoring_retry.delay(delivery.scoring_retry, reply.retry_after_seconds, rng)
        retry = delivery.scoring_retry + 1
        bus.schedule(settings.request_topic, retry_message(request, retry), now + timedelta(seconds=delay))
        logger.warning("request %s: endpoint answered %s; retry %s in %.1f s", request.request_id, reply.status,
                       retry, delay)  # fmt: skip
        return ScoreOutcome.RESCHEDULED
    code, message = classify_rejection(reply)
    reason = f"endpoint rejected the request with HTTP {reply.status} ({code})"
    _fail(request, code, message, reason, settings, blobs, ledger, now)
    raise DeadLetter(f"request {request.request_id}: {reason}")


def _fail(
    request: InferenceRequest,
    code: str,
    message: str,
    dead_letter_reason: str | None,
    settings: Settings,
    blobs: BlobStore,
    ledger: Ledger,
    now: datetime,
) -> None:
    base = LedgerRecord.for_request(request, now)
    location = record_error(blobs, settings.output_container, base, code=code, message=message, now=now)
    transition = failed(base, now, code=code, message=message, error_location=location)

    def apply(current: LedgerRecord | None) -> LedgerRecord | None:
        new = transition(current)
        return None if new is None else replace(new, dead_letter_reason=dead_letter_reason, updated_at=iso(now))

    ledger.advance(request.request_id, apply, now=now)
    logger.error("request %s failed: %s %s", request.request_id, code, message)
