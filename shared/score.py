"""Use case ``score``: hand the :class:`InferenceRequest` messages of one batch to the scoring endpoint as
async requests.

The trigger receives Service Bus messages in batches. Each message is read and checked against the ledger
first: a request already accepted, finished, or superseded by a newer attempt is skipped without a call, and
a request named twice in one batch counts once. The first delivery of the message ``submit`` published names
the ETag of the record it created (``ledger_etag``): then the record is known without reading it, and
``accepted`` is written against that ETag (:meth:`_Scorer.known` says when this is safe).

Small files (``SCORING_BATCH_MAX_FILE_BYTES`` and under) are then sent together, up to
``SCORING_BATCH_MAX_FILES`` per POST, as one :class:`AsyncScoringBatch` (the endpoint queues them as one job
and still publishes one result per file); a larger file, or a small one left alone, goes in its own
:class:`AsyncScoringRequest`.

Outcomes by the endpoint's answer, file by file:

* 2xx: the endpoint accepted the work (for a batch, its answer says so per file: accepted or a duplicate of
  work it already has). A file larger than ``SCORING_BATCH_MAX_FILE_BYTES`` is recorded ``accepted`` then, which
  restarts the result deadline ``reconcile`` watches and shows it as being scored. A small file's ``accepted``
  is not written: the request carries it to the writer as a :class:`shared.ledger.Handover` in its ``context``,
  and the writer's one conditional write records both (a small file is scored in well under the deadline, so it
  needs no restart; its record says ``submitted`` until its result is written, then has ``accepted_at``). A
  redelivered message of such a file is therefore sent again; the endpoint answers it as a duplicate while it
  still knows the work, and otherwise scores it again, which the writer writes once.
* throttled or unreachable (429, 503, other 5xx/408, connection errors, timeouts): a copy of each file's
  message (and of every file of the batch not sent yet, without calling again) is *scheduled* on the request
  topic for later (Retry-After honoured, else exponential back-off with
  a cap) and the function returns normally, so the trigger completes the originals. A batch answered this way
  was queued whole or not at all, so every file of it is retried and none is scored twice. The copies are sent
  first: if the function dies before returning, the originals are delivered again and schedule copies with the
  same message ids, which the topic's duplicate detection drops. Throttling therefore never uses up the
  subscription's delivery count.
* permanent rejection of a file (400, 401, 403, 404, other 4xx; for a batch, a file answered ``rejected``): an
  error record and a failed ledger entry are written and the message completes: the error record is the file's
  outcome. A batch refused as a whole is sent again file by file, so an endpoint that does not take batches
  still serves every file and each refusal names its own file.

The runtime does not renew the locks of a batch: once the batch has been calling the endpoint for
:data:`shared.limits.BATCH_CALL_BUDGET_SECONDS`, its files not sent yet are rescheduled like throttled ones.

A message whose body is not an :class:`InferenceRequest` names no file to record an error for: it is kept with
its body in the output container (:func:`shared.errors.write_unreadable_message`) and completed, so it cannot
hold back the other messages of its batch.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.contracts import (
    BATCH_INLINE_MAX_CHARS,
    MAX_CONTEXT_CHARS,
    Admission,
    AsyncScoringBatch,
    AsyncScoringBatchReply,
    AsyncScoringRequest,
    ContractError,
    ErrorCode,
    FileAdmission,
    InferenceRequest,
    ReplyTo,
    RequestState,
    parse_iso,
)
from shared.errors import record_error, write_unreadable_message
from shared.ledger import Handover, Ledger, LedgerRecord, accepted, failed
from shared.limits import BATCH_CALL_BUDGET_SECONDS
from shared.messages import retry_message
from shared.ports import BlobStore, EndpointReply, MessageBus, ScoringEndpoint
from shared.routes import Route
from shared.settings import Settings
from shared.telemetry import pipeline

logger = logging.getLogger(__name__)


class ScoreOutcome(StrEnum):
    ACCEPTED = "accepted"
    RESCHEDULED = "rescheduled"
    GAVE_UP = "gave_up"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Delivery:
    """The parts of a received request message this use case needs."""

    body: bytes
    message_id: str
    delivery_count: int
    scoring_retry: int
    traceparent: str | None = None  # the trace the message carries: its file's


@dataclass(frozen=True)
class _FileToScore:
    """A request that goes to the endpoint, with the message that brought it and the ledger record (and its
    ETag) read for it or known from the message, which "accepted" is written against (at most one read for
    the whole step), or handed over to the writer instead (a small file)."""

    request: InferenceRequest
    delivery: Delivery
    known: tuple[LedgerRecord | None, str | None]
    handover: Handover | None = None


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


class _Scorer:
    """One batch's calls: the collaborators and the time, shared by every file of it."""

    def __init__(
        self,
        *,
        route: Route,
        settings: Settings,
        blobs: BlobStore,
        bus: MessageBus,
        endpoint: ScoringEndpoint,
        ledger: Ledger,
        now: datetime,
        rng: random.Random | None,
        monotonic: Callable[[], float],
    ) -> None:
        self.route = route
        self.settings = settings
        self.blobs = blobs
        self.bus = bus
        self.endpoint = endpoint
        self.ledger = ledger
        self.now = now
        self.rng = rng
        # Once the endpoint answered 429/5xx or not at all, the rest of the batch is rescheduled without calling
        # it again: a busy endpoint is not asked again at once, and a dead one costs one timeout, not one per file.
        self.unavailable: EndpointReply | None = None
        self.monotonic = monotonic
        self.started = monotonic()

    def admit(self, delivery: Delivery, seen: set[tuple[str, int]]) -> _FileToScore | ScoreOutcome:
        """The work a message asks for, or why there is none."""
        try:
            request = InferenceRequest.from_json(delivery.body)
        except ContractError as exc:
            where = write_unreadable_message(self.blobs, self.settings.output_container, message_id=delivery.message_id,
                                             body=delivery.body, reason=str(exc), now=self.now)  # fmt: skip
            logger.error("message %s is not an inference request (%s); kept as %s and completed", delivery.message_id,
                         exc, where)  # fmt: skip
            return ScoreOutcome.UNREADABLE
        key = (request.request_id, request.attempt)
        if key in seen:
            logger.info("request %s attempt %s is twice in this batch", request.request_id, request.attempt)
            return ScoreOutcome.SKIPPED
        record, etag = self.known(request, delivery) or self.ledger.read(request.request_id)
        if record is not None:
            if record.terminal or record.attempt > request.attempt:
                logger.info("request %s is %s (attempt %s); skipping attempt %s", request.request_id, record.state,
                            record.attempt, request.attempt)  # fmt: skip
                return ScoreOutcome.SKIPPED
            if record.state == RequestState.ACCEPTED and record.attempt == request.attempt:
                logger.info("request %s attempt %s was already accepted", request.request_id, request.attempt)
                return ScoreOutcome.SKIPPED
        if request.model != self.route.model:
            logger.warning("request %s for model %s reached route %s", request.request_id, request.model,
                           self.route.model)  # fmt: skip
        seen.add(key)
        return _FileToScore(request, delivery, (record, etag), self.handover(request, delivery, record, etag))

    def handover(
        self, request: InferenceRequest, delivery: Delivery, record: LedgerRecord | None, etag: str | None
    ) -> Handover | None:
        """The ``accepted`` record a small file hands to the writer instead of writing it (None: written here)."""
        if request.size > self.settings.batch_max_file_bytes or record is None or etag is None:
            return None
        changed = accepted(request, self.now, delivery.scoring_retry)(record)
        if changed is None:
            return None
        handover = Handover(changed, etag)
        return handover if len(handover.context) <= MAX_CONTEXT_CHARS else None

    def known(self, request: InferenceRequest, delivery: Delivery) -> tuple[LedgerRecord, str] | None:
        """The ledger record and its ETag without reading them, when the message names the record ``submit``
        created and nothing can have moved it on before this call; None: read it.

        The skip rules above need the record only to catch work that moved on: an earlier delivery of this
        message that was accepted (not the first delivery), a rescheduled copy whose original or its
        redelivery may have been accepted (``scoring_retry``), a newer attempt from ``reconcile`` (which acts
        only a result deadline after the record's last change: the message is younger than half of it, which
        leaves room for clocks that differ). Anything else that changes the record (a duplicate of the
        message the broker let through, a late result) makes the ``accepted`` write fail its ETag condition,
        and that write then reads and decides like any conflict; at worst the endpoint was asked once more.
        """
        if request.ledger_etag is None or request.attempt != 1 or delivery.delivery_count != 1:
            return None
        if delivery.scoring_retry != 0:
            return None
        try:
            record = LedgerRecord.created_for(request, delivery.traceparent)
            age = self.now - parse_iso(request.submitted_at)
        except ValueError:
            return None
        if age >= timedelta(minutes=self.settings.result_deadline_minutes) / 2:
            return None
        return record, request.ledger_etag

    def scoring_request(self, work: _FileToScore, *, inline: bool = True) -> AsyncScoringRequest:
        """The endpoint's request for ``work``, with the file's bytes when its message carries them and ``inline``."""
        request = work.request
        ttl = timedelta(minutes=self.settings.sas_ttl_minutes)
        return AsyncScoringRequest(
            request_id=request.request_id,
            blob_url=self.blobs.read_sas_url(request.container, request.blob_name, ttl),
            reply=ReplyTo(topic=self.settings.result_topic, session_id=request.session_id),
            input_name=request.blob_name,
            format=request.format,
            compression=request.compression,
            model=request.model,
            attempt=request.attempt,
            traceparent=work.delivery.traceparent,
            context=work.handover.context if work.handover is not None else None,
            input_b64=request.input_b64 if inline else None,
        )

    def post(self, body: bytes) -> EndpointReply:
        if self.unavailable is not None:
            return self.unavailable
        if self.monotonic() - self.started > BATCH_CALL_BUDGET_SECONDS:
            # The runtime does not renew a batch's locks: leave the rest for later rather than lose the locks.
            self.unavailable = EndpointReply(0, f"not sent: the batch spent its {BATCH_CALL_BUDGET_SECONDS:g} s")
            return self.unavailable
        reply = self.endpoint.post(body)
        if reply.transient:
            self.unavailable = reply
        return reply

    def alone(self, work: _FileToScore) -> ScoreOutcome:
        reply = self.post(self.scoring_request(work).to_json())
        if 200 <= reply.status < 300:
            return self.accepted(work)
        if reply.transient:
            return self.later(work, reply)
        code, message = classify_rejection(reply)
        return self.fail(work, code, message)

    def together(self, group: Sequence[_FileToScore]) -> list[ScoreOutcome]:
        """One POST for ``group`` (small files of one model); one outcome per file, in order."""
        inline = inline_within([w.request.input_b64 for w in group], BATCH_INLINE_MAX_CHARS)
        requests = tuple(self.scoring_request(w, inline=keep) for w, keep in zip(group, inline, strict=True))
        batch = AsyncScoringBatch(model=group[0].request.model, requests=requests)
        reply = self.post(batch.to_json())
        if reply.transient:
            return [self.later(work, reply) for work in group]
        if not 200 <= reply.status < 300:
            logger.warning("endpoint refused a batch of %d files (HTTP %s: %s); sending them one by one",
                           len(group), reply.status, reply.body[:300])  # fmt: skip
            return [self.alone(work) for work in group]
        try:
            admissions = {(a.request_id, a.attempt): a for a in AsyncScoringBatchReply.from_json(reply.body).admissions}
        except ContractError as exc:
            # The endpoint took the batch (2xx) but its answer is unreadable: the files count as accepted, and
            # reconcile resubmits any whose result does not come by the deadline.
            logger.warning("endpoint accepted a batch of %d files with an unreadable answer: %s", len(group), exc)
            admissions = {}
        # Each file is settled in a copy of this context, so the request id its lines name stays with its own lines.
        return [contextvars.copy_context().run(self.settle, work, admissions.get((work.request.request_id,
                                                                                    work.request.attempt)))
                for work in group]  # fmt: skip

    def settle(self, work: _FileToScore, admission: FileAdmission | None) -> ScoreOutcome:
        """A file of a batch the endpoint took: accepted, or refused on its own."""
        if admission is not None and admission.status == Admission.REJECTED:
            code = admission.code or ErrorCode.ENDPOINT_REJECTED
            return self.fail(work, code, admission.message or "refused by the scoring endpoint")
        return self.accepted(work)

    def accepted(self, work: _FileToScore) -> ScoreOutcome:
        request = work.request
        if work.handover is not None:
            pipeline.described(work.handover.record)
            logger.info("request %s attempt %s accepted by %s (recorded with its result)", request.request_id,
                        request.attempt, self.route.model)  # fmt: skip
            return ScoreOutcome.ACCEPTED
        transition = accepted(request, self.now, work.delivery.scoring_retry)
        self.ledger.advance(request.request_id, transition, now=self.now, known=work.known)
        logger.info("request %s attempt %s accepted by %s", request.request_id, request.attempt, self.route.model)
        return ScoreOutcome.ACCEPTED

    def later(self, work: _FileToScore, reply: EndpointReply) -> ScoreOutcome:
        """Throttled or unreachable: schedule a copy of the message, or give up after the last retry."""
        request, retries = work.request, work.delivery.scoring_retry
        policy = self.settings.scoring_retry
        if policy.gives_up(retries):
            message = f"scoring endpoint still unavailable after {retries} retries (HTTP {reply.status})"
            self.fail(work, ErrorCode.ENDPOINT_UNAVAILABLE, message)
            return ScoreOutcome.GAVE_UP
        delay = policy.delay(retries, reply.retry_after_seconds, self.rng)
        with pipeline.continued(work.delivery.traceparent):  # the copy stays in its file's trace
            self.bus.schedule(
                self.settings.request_topic, retry_message(request, retries + 1), self.now + timedelta(seconds=delay)
            )
        logger.warning("request %s: endpoint answered %s; retry %s in %.1f s", request.request_id, reply.status,
                       retries + 1, delay)  # fmt: skip
        return ScoreOutcome.RESCHEDULED

    def fail(self, work: _FileToScore, code: str, message: str) -> ScoreOutcome:
        request = work.request
        base = LedgerRecord.for_request(request, self.now)
        location = record_error(
            self.blobs, self.settings.output_container, base, code=code, message=message, now=self.now
        )
        self.ledger.advance(
            request.request_id,
            failed(base, self.now, code=code, message=message, error_location=location),
            now=self.now,
            known=work.known,
        )
        logger.error("request %s failed: %s %s", request.request_id, code, message)
        return ScoreOutcome.REJECTED


def inline_within(inputs: Sequence[str | None], budget: int) -> list[bool]:
    """Which of a batch's inline inputs (base64, None for none) it sends inline: in order, while their characters
    fit in ``budget``; the others are read by the endpoint from their URL."""
    keep = []
    for text in inputs:
        fits = text is not None and len(text) <= budget
        if fits:
            budget -= len(text or "")
        keep.append(fits)
    return keep


def score_batch(
    deliveries: Sequence[Delivery],
    *,
    route: Route,
    settings: Settings,
    blobs: BlobStore,
    bus: MessageBus,
    endpoint: ScoringEndpoint,
    ledger: Ledger,
    now: datetime,
    rng: random.Random | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> list[ScoreOutcome]:
    """One outcome per delivery, in order (see the module docstring)."""
    scorer = _Scorer(route=route, settings=settings, blobs=blobs, bus=bus, endpoint=endpoint, ledger=ledger,
                     now=now, rng=rng, monotonic=monotonic)  # fmt: skip
    outcomes: dict[int, ScoreOutcome] = {}
    small: dict[str, list[tuple[int, _FileToScore]]] = {}  # by model
    seen: set[tuple[str, int]] = set()
    for i, delivery in enumerate(deliveries):
        work = scorer.admit(delivery, seen)
        if isinstance(work, ScoreOutcome):
            outcomes[i] = work
        elif settings.batch_max_files > 1 and work.request.size <= settings.batch_max_file_bytes:
            small.setdefault(work.request.model, []).append((i, work))
        else:
            outcomes[i] = scorer.alone(work)
    for works in small.values():
        for start in range(0, len(works), settings.batch_max_files):
            group = works[start : start + settings.batch_max_files]
            if len(group) == 1:
                outcomes[group[0][0]] = scorer.alone(group[0][1])
                continue
            for (i, _), outcome in zip(group, scorer.together([w for _, w in group]), strict=True):
                outcomes[i] = outcome
    return [outcomes[i] for i in range(len(deliveries))]


def score_request(delivery: Delivery, **kwargs: Any) -> ScoreOutcome:
    """One message on its own (a batch of one)."""
    [outcome] = score_batch([delivery], **kwargs)
    return outcome
