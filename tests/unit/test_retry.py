"""RetryPolicy: tries, back-off with a cap and jitter, Retry-After, and the loop helper."""

from __future__ import annotations

import random

import pytest

from shared.retry import RetryPolicy


def test_call_retries_until_success_and_waits_the_policy_delays() -> None:
    policy = RetryPolicy(tries=4, base_seconds=1.0, max_seconds=3.0, jitter=0.0)
    waits: list[float] = []
    outcomes = iter([ValueError("a"), ValueError("b"), "done"])

    def operation() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert policy.call(operation, what="op", sleep=waits.append) == "done"
    assert waits == [1.0, 2.0]


def test_call_raises_the_last_error_when_the_tries_are_used_up() -> None:
    policy = RetryPolicy(tries=3, base_seconds=1.0, max_seconds=1.0, jitter=0.0)
    waits: list[float] = []
    calls = []

    def operation() -> None:
        calls.append(1)
        raise OSError(f"try {len(calls)}")

    with pytest.raises(OSError, match="try 3"):
        policy.call(operation, what="op", sleep=waits.append)
    assert waits == [1.0, 1.0]


def test_call_does_not_retry_other_errors() -> None:
    policy = RetryPolicy(tries=5, base_seconds=1.0, max_seconds=1.0)

    def operation() -> None:
        raise KeyError("no")

    with pytest.raises(KeyError):
        policy.call(operation, what="op", retry_on=(OSError,), sleep=lambda _s: None)


def test_delay_is_capped_jittered_and_never_below_retry_after() -> None:
    policy = RetryPolicy(tries=None, base_seconds=2.0, max_seconds=20.0, jitter=0.5)
    rng = random.Random(1)
    assert all(1.0 <= policy.delay(0, rng=rng) <= 2.0 for _ in range(50))
    assert all(10.0 <= policy.delay(40, rng=rng) <= 20.0 for _ in range(50))
    assert policy.delay(0, retry_after=7.0, rng=rng) == 7.0
    assert policy.delay(0, retry_after=1e9, rng=rng) == policy.max_retry_after_seconds
    assert not policy.gives_up(10**6)


def test_sdk_arguments_keep_the_tries() -> None:
    assert RetryPolicy(tries=4, base_seconds=1.0, max_seconds=8.0).sdk_exponential()["retry_total"] == 3
    with pytest.raises(ValueError):
        RetryPolicy(tries=0, base_seconds=1.0, max_seconds=1.0)
