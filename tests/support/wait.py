"""Waiting in tests: poll a condition until it holds or a deadline passes, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> T:
    """The first value of ``probe`` that is not None (or False); fails naming ``what`` after ``timeout``
    seconds, with ``detail()`` (such as a log tail) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fails naming ``what`` after ``timeout`` seconds."""
    wait_for(lambda: True if condition() else None, timeout, what, interval=interval, detail=detail)
