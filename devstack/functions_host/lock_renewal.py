"""Message and session lock renewal for the Service Bus triggers: one sleeping thread per trigger.

azure-servicebus's ``AutoLockRenewer`` re-queues every registered lock as soon as it has checked it, and with
one worker its dispatcher loops over that queue without pausing, so each registered message or session keeps
a CPU core busy until it is settled or closed; under load that was most of the host's CPU. This renewer keeps
the locks in a heap ordered by when each is due and sleeps until the earliest one.

A lock is renewed when ``RENEW_BEFORE_SECONDS`` of it are left (short locks: when a third of the time it had
at its last renewal is left), and only for ``max_duration`` seconds after registration (the host.json
``maxAutoLockRenewalDuration``). Registration is a context manager around the work it protects.
The renewal calls run on this thread, as the SDK's renewer does; a failed renewal is logged and that lock
is dropped (the message then comes back after its lock expires, as in the real runtime).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

logger = logging.getLogger(__name__)

RENEW_BEFORE_SECONDS = 10.0
_MIN_PAUSE_SECONDS = 0.05


@dataclass
class _Lock:
    what: str
    renew: Callable[[], datetime | None]  # renews and returns the new expiry
    deadline: float  # monotonic time after which renewal stops
    active: bool = True


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    lock: _Lock = field(compare=False)


def _seconds_left(locked_until: datetime | None) -> float:
    if locked_until is None:
        return 0.0
    moment = locked_until if locked_until.tzinfo else locked_until.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds()


def next_renewal(seconds_left: float) -> float:
    """Seconds from now until a lock with ``seconds_left`` should be renewed."""
    return max(_MIN_PAUSE_SECONDS, seconds_left * 2 / 3, seconds_left - RENEW_BEFORE_SECONDS)


class LockRenewer:
    def __init__(self, name: str, max_duration: float) -> None:
        self._max_duration = max_duration
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=f"lock-renewal-{name}", daemon=True)
        self._thread.start()

    @contextmanager
    def message(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> Iterator[None]:
        """Keeps ``message``'s lock while the block runs."""

        def renew() -> datetime | None:
            return receiver.renew_message_lock(message)

        with self.hold(f"message {message.message_id}", renew, message.locked_until_utc):
            yield

    @contextmanager
    def session(self, receiver: ServiceBusReceiver) -> Iterator[None]:
        """Keeps the session lock of a session receiver while the block runs."""
        session = receiver.session
        with self.hold(f"session {session.session_id}", session.renew_lock, session.locked_until_utc):
            yield

    @contextmanager
    def hold(self, what: str, renew: Callable[[], datetime | None], locked_until: datetime | None) -> Iterator[None]:
        lock = _Lock(what, renew, time.monotonic() + self._max_duration)
        self._schedule(lock, _seconds_left(locked_until))
        try:
            yield
        finally:
            lock.active = False  # dropped from the heap when it comes due

    def _schedule(self, lock: _Lock, seconds_left: float) -> None:
        at = time.monotonic() + next_renewal(seconds_left)
        if at > lock.deadline:
            return
        with self._changed:
            heapq.heappush(self._heap, _Due(at, next(self._seq), lock))
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join(5.0)

    def _next_due(self) -> _Lock | None:
        """Waits until the earliest lock is due and returns it; None when closed."""
        with self._changed:
            while not self._stopped:
                if self._heap and not self._heap[0].lock.active:
                    heapq.heappop(self._heap)
                    continue
                pause = self._heap[0].at - time.monotonic() if self._heap else None
                if pause is not None and pause <= 0:
                    return heapq.heappop(self._heap).lock
                self._changed.wait(pause)
            return None

    def _loop(self) -> None:
        while (lock := self._next_due()) is not None:
            try:
                expiry = lock.renew()
            except (ServiceBusError, ValueError, AttributeError) as exc:
                # ValueError/AttributeError: the receiver or message was closed or settled meanwhile.
                if lock.active:
                    logger.warning("could not renew the lock of %s: %s", lock.what, exc)
                continue
            if lock.active:
                self._schedule(lock, _seconds_left(expiry))
