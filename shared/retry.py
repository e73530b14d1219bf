"""Retry policies: one type for every retry loop, and every loop's settings in this one place.

A :class:`RetryPolicy` says how many tries an operation gets and how long to wait before each retry:
exponential back-off from ``base_seconds`` (doubling per retry, capped at ``max_seconds``), drawn at
random from the top ``jitter`` share of that so that callers which failed together do not retry together,
and never sooner than a server's ``Retry-After`` (itself capped, so a bogus header cannot park work).

Loops that use them:

* the scoring endpoint answering 429/5xx or not at all (``shared.score``: the message is *scheduled* again
  after :meth:`RetryPolicy.delay`; settings ``SCORING_RETRY_BASE_SECONDS``, ``SCORING_RETRY_MAX_SECONDS``,
  ``SCORING_MAX_RETRIES`` read by ``shared.settings``, defaults below);
* ledger updates that lost an ETag race (``shared.ledger``, :data:`LEDGER_CONFLICT`);
* the scoring service publishing a result (``scoring.service.dispatcher``, :data:`RESULT_PUBLISH`,
  tries from ``SCORING_PUBLISH_ATTEMPTS``) and re-opening a broken publisher (:data:`PUBLISHER_REOPEN`);
* the Azure SDK's own retries where our adapters set them (:meth:`RetryPolicy.sdk_exponential`): the
  scoring service reading an input (:data:`INPUT_READ`) and the client's storage calls (:data:`CLIENT_STORAGE`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypedDict, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SdkExponential(TypedDict):
    retry_total: int
    initial_backoff: int
    increment_base: int
    random_jitter_range: int


@dataclass(frozen=True)
class RetryPolicy:
    tries: int | None  # tries in all, the first included; None: never give up
    base_seconds: float
    max_seconds: float
    jitter: float = 0.5  # the wait is drawn from [(1 - jitter) * backoff, backoff]
    max_retry_after_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.tries is not None and self.tries < 1:
            raise ValueError(f"a retry policy needs at least one try, got {self.tries}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def with_tries(self, tries: int | None) -> RetryPolicy:
        return replace(self, tries=tries)

    def gives_up(self, retry: int) -> bool:
        """True when ``retry`` retries (tries after the first) have been made and no more are allowed."""
        return self.tries is not None and retry >= self.tries - 1

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry + 1`` (``retry`` = retries made so far)."""
        backoff = min(self.max_seconds, self.base_seconds * (2 ** min(retry, 62)))
        wait = backoff * (rng or random).uniform(1.0 - self.jitter, 1.0)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after_seconds))
        return wait

    def call(
        self,
        operation: Callable[[], T],
        *,
        what: str,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """Runs ``operation`` until it succeeds or the tries are used up (the last error is raised)."""
        retry = 0
        while True:
            try:
                return operation()
            except retry_on as exc:
                if self.gives_up(retry):
                    raise
                wait = self.delay(retry)
                logger.warning("%s failed (%s: %s); try %d again in %.1f s", what, type(exc).__name__, exc,
                               retry + 2, wait)  # fmt: skip
                sleep(wait)
                retry += 1

    def sdk_exponential(self) -> SdkExponential:
        """Keyword arguments for ``azure.storage.blob.ExponentialRetry``: the same tries, the same first
        wait; the SDK spaces later waits by its own formula (``base + 2 ** retry``, +- jitter)."""
        return {
            "retry_total": (self.tries or 1) - 1,
            "initial_backoff": max(1, round(self.base_seconds)),
            "increment_base": 2,
            "random_jitter_range": max(1, round(self.base_seconds * self.jitter)),
        }


SCORING_ENDPOINT = RetryPolicy(tries=51, base_seconds=5.0, max_seconds=300.0)
LEDGER_CONFLICT = RetryPolicy(tries=20, base_seconds=0.02, max_seconds=0.1, jitter=1.0)
RESULT_PUBLISH = RetryPolicy(tries=3, base_seconds=2.0, max_seconds=10.0, jitter=0.0)
PUBLISHER_REOPEN = RetryPolicy(tries=None, base_seconds=1.0, max_seconds=10.0)
# The SDK's default waits 15 s, 18 s, 24 s... between tries: over a minute before an unreachable account is
# reported. A few quick tries keep transient errors covered and failures prompt.
INPUT_READ = RetryPolicy(tries=4, base_seconds=1.0, max_seconds=8.0)
CLIENT_STORAGE = RetryPolicy(tries=3, base_seconds=1.0, max_seconds=4.0)
