"""Accepting async requests: a bounded queue, worker threads, and de-duplication of accepted requests.

``submit_group`` never blocks the HTTP handler: it records each request under (request_id, attempt), puts
the new ones on the queue as one job and returns at once, or rejects them all with 429 + Retry-After when
the queue is full (nothing of the group is queued, so the caller can retry the whole group). A request
already queued, running or recently done is acknowledged again without new work (a re-delivered
Service Bus message or a client retry must not score a file twice). A job of several requests (several
small files of one batch) is scored by one worker, file after file, and each file's result is published
as soon as it is ready. The table of known requests is
bounded: queued and running entries are bounded by the queue size and worker count, and only the
``dedupe_entries`` most recent finished ones are remembered.

Each worker thread owns its publisher (Service Bus client + sender) and its scoring job (with its own
storage clients) for its whole life; no SDK client is shared between threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from enum import StrEnum

from scoring.service.errors import RequestRejected
from scoring.service.publisher import ResultPublisher
from shared.contracts import AsyncScoringRequest, InferenceResult
from shared.retry import PUBLISHER_REOPEN, RetryPolicy
from shared.telemetry import pipeline

logger = logging.getLogger(__name__)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


Key = tuple[str, int]
Process = Callable[[AsyncScoringRequest], InferenceResult]


class Dispatcher:
    def __init__(
        self,
        *,
        workers: int,
        queue_size: int,
        dedupe_entries: int,
        retry_after_seconds: int,
        publish_retry: RetryPolicy,
        make_processor: Callable[[], Process],
        make_publisher: Callable[[], AbstractContextManager[ResultPublisher]],
    ) -> None:
        self._queue: queue.Queue[tuple[AsyncScoringRequest, ...]] = queue.Queue(queue_size)
        self._states: OrderedDict[Key, JobState] = OrderedDict()
        self._lock = threading.Lock()
        self._dedupe_entries = dedupe_entries
        self._retry_after = retry_after_seconds
        self._publish_retry = publish_retry
        self._make_processor = make_processor
        self._make_publisher = make_publisher
        self._threads = [
            threading.Thread(target=self._work, name=f"scoring-worker-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: AsyncScoringRequest) -> JobState | None:
        """None when newly accepted, else the state of the earlier copy of this request."""
        return self.submit_group([request])[0]

    def submit_group(self, requests: Sequence[AsyncScoringRequest]) -> list[JobState | None]:
        """Per request: None when newly accepted, else the state of the earlier copy of it. The new ones are
        queued as one job; a request named twice in the group counts once (the second copy is a duplicate)."""
        answers: list[JobState | None] = []
        new: list[AsyncScoringRequest] = []
        with self._lock:
            seen: set[Key] = set()
            for request in requests:
                key = (request.request_id, request.attempt)
                known = self._states.get(key) or (JobState.QUEUED if key in seen else None)
                answers.append(known)
                if known is None:
                    seen.add(key)
                    new.append(request)
            if not new:
                return answers
            try:
                self._queue.put_nowait(tuple(new))
            except queue.Full:
                raise RequestRejected(
                    429,
                    f"the scoring queue is full ({self._queue.maxsize} jobs waiting); retry later",
                    headers={"Retry-After": str(self._retry_after)},
                ) from None
            for request in new:
                self._states[(request.request_id, request.attempt)] = JobState.QUEUED
        return answers

    def state(self, request_id: str, attempt: int) -> JobState | None:
        with self._lock:
            return self._states.get((request_id, attempt))

    def _set(self, key: Key, state: JobState) -> None:
        with self._lock:
            self._states[key] = state
            self._states.move_to_end(key)
            if state == JobState.DONE:
                self._forget_old()

    def _forget_old(self) -> None:
        done = [k for k, v in self._states.items() if v == JobState.DONE]
        for key in done[: max(0, len(done) - self._dedupe_entries)]:
            del self._states[key]

    def _work(self) -> None:
        process = self._make_processor()
        failures = 0
        while True:
            try:
                with self._make_publisher() as publisher:
                    failures = 0
                    while True:
                        self._one(process, publisher)
            except Exception:
                # The publisher itself broke (for example its connection could not be opened):
                # back off and build a fresh one; the request that was in flight was already recorded.
                logger.exception("result publisher failed; reopening it")
                time.sleep(PUBLISHER_REOPEN.delay(failures))
                failures += 1

    def _one(self, process: Process, publisher: ResultPublisher) -> None:
        group = self._queue.get()
        for done, request in enumerate(group):
            key = (request.request_id, request.attempt)
            self._set(key, JobState.RUNNING)
            try:
                with pipeline.job_span(request.request_id, request.attempt, request.input_name, request.model):
                    result = process(request)
                    self._publish(publisher, result, request)
            except BaseException:
                # No result went out for this one and the rest of its group: forget them so that a retry of
                # them is accepted as new work (reconcile resubmits them after the result deadline).
                with self._lock:
                    for rest in group[done:]:
                        self._states.pop((rest.request_id, rest.attempt), None)
                raise
            self._set(key, JobState.DONE)

    def _publish(self, publisher: ResultPublisher, result: InferenceResult, request: AsyncScoringRequest) -> None:
        try:
            self._publish_retry.call(
                lambda: publisher.publish(result, request.reply.session_id),
                what=f"publishing the result of {request.request_id}",
            )
        except Exception:
            logger.exception("could not publish the result of %s; giving up", request.request_id)
            raise
