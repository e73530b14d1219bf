"""SessionAcceptGate: how many session threads accept while no session comes, and when parked ones wake."""

from __future__ import annotations

import threading

import pytest

from devstack.functions_host.session_accept import SessionAcceptGate


class ManualMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_the_idle_accepters_start_accepting_spread_over_a_cycle() -> None:
    gate = SessionAcceptGate(2, 2.5, ManualMonotonic())
    assert [gate.first(i) for i in range(5)] == [0.0, 1.25, None, None, None]
    assert gate.accepting() == 2


def test_a_thread_that_found_nothing_parks_when_enough_others_accept() -> None:
    clock = ManualMonotonic()
    gate = SessionAcceptGate(2, 2.5, clock)
    for i in range(4):
        gate.first(i)
    assert gate.wait(2, 0) is False  # parked, nothing accepted yet
    gate.accepted(0)  # thread 0 took a session: parked threads 2 and 3 accept too
    assert gate.wait(2, 0) is True and gate.wait(3, 0) is True
    assert gate.accepting() == 3  # 1, 2, 3
    clock.now += 2.5
    assert gate.found_nothing(2) is None  # 1 and 3 still accept: 2 parks
    assert gate.found_nothing(3) is not None  # only 1 left: 3 stays
    assert gate.accepting() == 2


def test_a_thread_that_stays_keeps_out_of_step_with_the_other_accepter() -> None:
    clock = ManualMonotonic()
    gate = SessionAcceptGate(2, 2.5, clock)
    gate.first(0)
    gate.first(1)
    clock.now += 1.25  # thread 1 starts its accept now
    gate.begin(1)
    clock.now += 1.25
    assert gate.found_nothing(0) == 0.0  # thread 1 started half a cycle ago: no wait
    clock.now += 0.05
    assert gate.found_nothing(1) == pytest.approx(
        1.2
    )  # thread 0 restarted 0.05 s ago: 1 waits to be half a cycle after it


def test_a_parked_thread_wakes_when_another_thread_accepts_a_session() -> None:
    gate = SessionAcceptGate(1, 2.5, ManualMonotonic())
    gate.first(0)
    gate.first(1)
    woke = threading.Event()

    def parked() -> None:
        if gate.wait(1, 30):
            woke.set()

    waiter = threading.Thread(target=parked)
    waiter.start()
    gate.accepted(0)
    waiter.join(30)
    assert woke.is_set()
