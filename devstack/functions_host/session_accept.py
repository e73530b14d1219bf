"""Which of a session trigger's threads wait for the next session, so idle threads cost nothing.

A session trigger has ``maxConcurrentSessions`` threads. The .NET session processor the Functions runtime uses
keeps that many accept calls pending at once, each a link held open at no cost. Here each pending accept is an
azure-servicebus receiver with its own AMQP session and link (on its thread's connection, which holds the token,
see session_receiver), closed and opened again whenever the accept wait ends without a session. Sixteen idle threads
took about a tenth of the host's CPU, and as many connections a second of the broker's, when each accept opened a
connection and the SDK polled it every 50 ms.

:class:`SessionAcceptGate` keeps only ``idle_accepters`` threads accepting while no session comes: a thread whose
accept found nothing parks when that many others are accepting, and every parked thread wakes as soon as any
thread accepts a session, so a burst of sessions has all threads accepting within one receiver open (a few
milliseconds; before, most of them were waiting already). The threads that stay accepting are kept out of step
(each starts its accepts a fraction of a cycle after the last one's), so while one reopens its receiver another is
waiting and a new session is not held up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SessionAcceptGate:
    """Shared by one trigger's session threads, each known by its index."""

    def __init__(self, idle_accepters: int, cycle: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_accepters = max(1, idle_accepters)
        self._spacing = cycle / self._idle_accepters
        self._clock = clock
        self._changed = threading.Condition()
        self._accepting: dict[int, float] = {}  # thread -> when its current (or next planned) accept starts
        self._parked: dict[int, int] = {}  # thread -> sessions accepted when it parked
        self._accepted = 0

    def first(self, index: int) -> float | None:
        """Seconds the thread waits before its first accept (spread over one cycle), or None: it starts parked."""
        with self._changed:
            if index >= self._idle_accepters:
                self._parked[index] = self._accepted
                return None
            delay = index * self._spacing
            self._accepting[index] = self._clock() + delay
            return delay

    def begin(self, index: int) -> None:
        """The thread starts an accept."""
        with self._changed:
            self._accepting[index] = self._clock()

    def accepted(self, index: int) -> None:
        """The thread took a session: every parked thread wakes and accepts."""
        with self._changed:
            self._accepting.pop(index, None)
            self._accepted += 1
            self._changed.notify_all()

    def found_nothing(self, index: int) -> float | None:
        """After an accept that timed out: None when the thread is to park, else seconds to wait before its next
        accept, so that it does not reopen its receiver at the same moment as another accepting thread."""
        with self._changed:
            self._accepting.pop(index, None)
            if len(self._accepting) >= self._idle_accepters:
                self._parked[index] = self._accepted
                return None
            now = self._clock()
            latest = max(self._accepting.values(), default=None)
            delay = 0.0 if latest is None else max(0.0, self._spacing - (now - latest))
            self._accepting[index] = now + delay
            return delay

    def wait(self, index: int, timeout: float) -> bool:
        """A parked thread waits up to ``timeout`` for a session to be accepted; True when it is to accept."""
        with self._changed:
            seen = self._parked.get(index, self._accepted)
            if not self._changed.wait_for(lambda: self._accepted != seen, timeout):
                return False
            self._parked.pop(index, None)
            self._accepting[index] = self._clock()
            return True

    def accepting(self) -> int:
        """How many threads are accepting (or about to)."""
        with self._changed:
            return len(self._accepting)
