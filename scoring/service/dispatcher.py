"""Accepting async requests: a bounded queue, worker threads, and de-duplication of accepted requests.

``submit_group`` never blocks the HTTP handler: it records each request under (request_id, attempt), puts
the new ones on the queue as one job and returns at once, or rejects them all with 429 + Retry-After when
the queue is full (nothing of the group is queued, so the caller can retry the whole group). A request
already queued, running or recently done is acknowledged again without new work (a re-delivered
Service Bus message or a client retry must not score a file twice). A job of several requests (several
small files of one batch) is scored by one worker, file after file; the results are published together
(one send per reply session, see ``publisher``) once the oldest of them has waited ``PUBLISH_AFTER_SECONDS``
or the job is done, so a burst of small files costs a send per few files while a file of a slow job does not
wait for all the others. A request counts as done only once the broker took its result; when publishing
fails for good (or the process dies), the files of the job without a published result are forgotten, so a
retry of them is accepted as new work (reconcile resubmits them after the result deadline). The table of
known requests is
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

from opentelemetry import context as otel_context

from scoring.service.errors import RequestRejected
from scoring.service.publisher import Outgoing, ResultPublisher
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

# A result of a job waits at most this long (plus the scoring of the file in progress) for others to go out
# with it: long enough to gather a few small files' results in a burst, short against a file's latency.
PUBLISH_AFTER_SECONDS = 0.1


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
        publish_after_seconds: float = PUBLISH_AFTER_SECONDS,
    ) -> None:
        self._queue: queue.Queue[tuple[AsyncScoringRequest, ...]] = queue.Queue(queue_size)
        self._states: OrderedDict[Key, JobState] = OrderedDict()
        self._done: OrderedDict[Key, None] = OrderedDict()  # the finished ones, oldest first
        self._lock = threading.Lock()
        self._dedupe_entries = dedupe_entries
        self._retry_after = retry_after_seconds
        self._publish_retry = publish_retry
        self._make_processor = make_processor
        self._make_publisher = make_publisher
        self._publish_after = publish_after_seconds
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
                self._done[key] = None
                self._forget_old()

    def _forget_old(self) -> None:
        # A table of their own keeps this a step per request (scanning every state took 0.3 ms per file at 4,096).
        while len(self._done) > self._dedupe_entries:
            key, _ = self._done.popitem(last=False)
            if self._states.get(key) == JobState.DONE:
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
        done: set[Key] = set()
        ready: list[Outgoing] = []
        oldest = 0.0
        try:
            for request in group:
                self._set((request.request_id, request.attempt), JobState.RUNNING)
                with pipeline.job_span(request.request_id, request.attempt, request.input_name, request.model):
                    result = process(request)
                    ready.append(Outgoing(result, request.reply.session_id, otel_context.get_current()))
                if len(ready) == 1:
                    oldest = time.monotonic()
                if time.monotonic() - oldest >= self._publish_after:
                    self._publish(publisher, ready, done)
                    ready = []
            if ready:
                self._publish(publisher, ready, done)
        except BaseException:
            # No result went out for these: forget them so that a retry of them is accepted as new work
            # (reconcile resubmits them after the result deadline).
            with self._lock:
                for request in group:
                    key = (request.request_id, request.attempt)
                    if key not in done:
                        self._states.pop(key, None)
            raise

    def _publish(self, publisher: ResultPublisher, results: list[Outgoing], done: set[Key]) -> None:
        """Publishes ``results`` with the retry policy; a retry sends only the results no send has taken yet."""
        waiting = list(results)

        def sent(items: Sequence[Outgoing]) -> None:
            for item in items:
                key = (item.result.request_id, item.result.attempt)
                done.add(key)
                self._set(key, JobState.DONE)
                waiting.remove(item)

        names = ", ".join(item.result.request_id for item in results)
        try:
            self._publish_retry.call(
                lambda: publisher.publish(tuple(waiting), sent), what=f"publishing the results of {names}"
            )
        except Exception:
            logger.exception("could not publish the results of %s; giving up", names)
            raise
