"""The host's lock renewer: renews before expiry while held, never after, and sleeps in between."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from devstack.functions_host.lock_renewal import RENEW_BEFORE_SECONDS, LockRenewer, next_renewal
from tests.support.wait import wait_until

LOCK_SECONDS = 0.3


class FakeLock:
    """A lock that lasts LOCK_SECONDS from each renewal; records when it was renewed."""

    def __init__(self) -> None:
        self.renewed: list[float] = []
        self.until = datetime.now(UTC) + timedelta(seconds=LOCK_SECONDS)
        self.lock = threading.Lock()

    def renew(self) -> datetime:
        with self.lock:
            if datetime.now(UTC) > self.until:
                raise AssertionError("renewed after the lock had expired")
            self.renewed.append(time.monotonic())
            self.until = datetime.now(UTC) + timedelta(seconds=LOCK_SECONDS)
            return self.until


@pytest.fixture
def renewer() -> LockRenewer:
    renewer = LockRenewer("test", max_duration=60)
    yield renewer
    renewer.close()


def test_next_renewal_leaves_a_margin() -> None:
    assert next_renewal(60) == pytest.approx(60 - RENEW_BEFORE_SECONDS)
    assert next_renewal(3) == pytest.approx(2)  # short locks: after two thirds of what is left
    assert next_renewal(0) > 0  # an expired lock is tried once more, not spun on


def test_a_held_lock_is_renewed_before_it_expires_and_not_after_release(renewer: LockRenewer) -> None:
    lock = FakeLock()
    with renewer.hold("fake", lock.renew, lock.until):
        # Five renewals in a row, each in time: one that came too late raised in the fake, which drops the lock.
        wait_until(lambda: len(lock.renewed) >= 5, 10, "five renewals of a 0.3 s lock")
    released = time.monotonic()
    count = len(lock.renewed)
    time.sleep(3 * LOCK_SECONDS)  # what is checked is that nothing happens: long enough for several renewals
    assert all(at <= released for at in lock.renewed)
    assert len(lock.renewed) == count


def test_renewal_stops_after_the_maximum_duration() -> None:
    renewer = LockRenewer("short", max_duration=2 * LOCK_SECONDS)
    try:
        lock = FakeLock()
        with renewer.hold("fake", lock.renew, lock.until):
            time.sleep(6 * LOCK_SECONDS)  # held three times past the maximum: renewals must stop on their own
        assert 1 <= len(lock.renewed) <= 3, lock.renewed
    finally:
        renewer.close()


def test_a_failed_renewal_drops_that_lock_only(renewer: LockRenewer) -> None:
    good = FakeLock()

    def broken() -> datetime:
        raise ValueError("the receiver was closed")

    with renewer.hold("broken", broken, good.until), renewer.hold("good", good.renew, good.until):
        wait_until(lambda: len(good.renewed) >= 3, 10, "three renewals of the good lock")
