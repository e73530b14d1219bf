"""Session-enabled entities: named and next-available session receivers, ordering, locks and state."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import OperationTimeoutError, SessionCannotBeLockedError

from devstack.servicebus.opcounts import read_operations
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.servicebus.sbhelp import client
from tests.support.wait import wait_for, wait_until


def no_retry(sb: ServiceBusEmulator) -> ServiceBusClient:
    return client(sb, retry_total=0)


def test_named_session_ordering_state_and_exclusive_lock(sb: ServiceBusEmulator) -> None:
    with no_retry(sb) as c:
        with c.get_queue_sender("sessions") as sender:
            batch = sender.create_message_batch()
            for i in range(5):
                batch.add_message(ServiceBusMessage(f"a{i}", session_id="A"))
                batch.add_message(ServiceBusMessage(f"b{i}", session_id="B"))
            sender.send_messages(batch)
        with c.get_queue_receiver("sessions", session_id="A", max_wait_time=1) as receiver:
            session = receiver.session
            assert session.session_id == "A"
            assert session.locked_until_utc is not None and session.locked_until_utc > datetime.now(UTC)
            assert session.get_state() is None
            session.set_state(b"progress:3")
            assert session.get_state() == b"progress:3"
            renewed = session.renew_lock()
            assert renewed >= session.locked_until_utc or renewed > datetime.now(UTC)

            with (
                pytest.raises(SessionCannotBeLockedError),
                c.get_queue_receiver("sessions", session_id="A", max_wait_time=1) as second,
            ):
                second.receive_messages(max_wait_time=0.5)

            got = []
            for m in receiver.receive_messages(max_message_count=3, max_wait_time=1):
                got.append(str(m))
                assert m.session_id == "A"
                if str(m) == "a1":
                    receiver.abandon_message(m)  # goes back to the front of its session
                else:
                    receiver.complete_message(m)
            for m in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                got.append(str(m))
                receiver.complete_message(m)
        assert got == ["a0", "a1", "a2", "a1", "a3", "a4"]

        # Released on close: another receiver may now take session A (its state survives).
        with c.get_queue_receiver("sessions", session_id="A", max_wait_time=0.5) as receiver:
            assert receiver.session.get_state() == b"progress:3"
            assert receiver.receive_messages(max_wait_time=0.3) == []

        with c.get_queue_receiver("sessions", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver:
            assert receiver.session.session_id == "B"
            bodies = []
            for m in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                bodies.append(str(m))
                receiver.complete_message(m)
        assert bodies == [f"b{i}" for i in range(5)]


def test_next_available_skips_locked_sessions(sb: ServiceBusEmulator) -> None:
    with no_retry(sb) as c:
        with c.get_queue_sender("sessions-order") as sender:
            sender.send_messages([ServiceBusMessage("x", session_id="S1"), ServiceBusMessage("y", session_id="S2")])
        with (
            c.get_queue_receiver("sessions-order", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as first,
            c.get_queue_receiver("sessions-order", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as second,
        ):
            ids = {first.session.session_id, second.session.session_id}
            assert ids == {"S1", "S2"}
            for r in (first, second):
                for m in r.receive_messages(max_message_count=5, max_wait_time=1):
                    assert m.session_id == r.session.session_id
                    r.complete_message(m)


def test_a_released_session_without_messages_is_not_given_to_a_waiting_receiver(sb: ServiceBusEmulator) -> None:
    # Accepting the next available session gets a session with messages: one whose messages were all completed
    # stays with nobody when its receiver closes, and a receiver waiting meanwhile gets the next session that
    # has messages.
    done, later = f"done-{uuid.uuid4().hex[:6]}", f"later-{uuid.uuid4().hex[:6]}"
    got: list[str] = []
    completed = Counter(read_operations(sb.data_dir))["settle complete"]
    with no_retry(sb) as c:
        with c.get_queue_sender("sessions-order") as sender:
            sender.send_messages(ServiceBusMessage("x", session_id=done))
        first = c.get_queue_receiver("sessions-order", session_id=done, max_wait_time=1)
        with first:
            for m in first.receive_messages(max_message_count=1, max_wait_time=5):
                first.complete_message(m)

            def counted() -> Counter[str] | None:
                now = Counter(read_operations(sb.data_dir))
                return now if now["settle complete"] > completed else None

            # the counts the emulator writes now include this receiver's links (attached before it completed)
            counts = wait_for(counted, timeout=20, what="the emulator's count of the completion")
            attached = counts["links attached"]

            def wait_for_next() -> None:
                with (
                    no_retry(sb) as other,
                    other.get_queue_receiver(
                        "sessions-order", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=20
                    ) as waiting,
                ):
                    got.append(str(waiting.session.session_id))
                    for m in waiting.receive_messages(max_message_count=1, max_wait_time=5):
                        waiting.complete_message(m)

            waiter = threading.Thread(target=wait_for_next)
            waiter.start()
            # its $cbs pair and its session link have reached the broker: the accept is pending there
            wait_until(
                lambda: Counter(read_operations(sb.data_dir))["links attached"] >= attached + 3,
                timeout=20,
                what="the waiting receiver's links to be attached",
            )
        with c.get_queue_sender("sessions-order") as sender:
            sender.send_messages(ServiceBusMessage("y", session_id=later))
        waiter.join(30)
    assert got == [later]


def test_next_available_times_out_when_nothing_is_waiting(sb: ServiceBusEmulator) -> None:
    started = time.monotonic()
    with (
        no_retry(sb) as c,
        pytest.raises(OperationTimeoutError),
        c.get_queue_receiver("sessions-order", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as r,
    ):
        r.receive_messages(max_wait_time=1)
    assert time.monotonic() - started < 30


def test_session_lock_renew_outlives_the_lock_duration(sb: ServiceBusEmulator) -> None:
    with no_retry(sb) as c:
        with c.get_queue_sender("session-renew") as sender:
            sender.send_messages([ServiceBusMessage("r1", session_id="R"), ServiceBusMessage("r2", session_id="R")])
        with c.get_queue_receiver("session-renew", session_id="R", max_wait_time=1) as receiver:
            (m,) = receiver.receive_messages(max_message_count=1, max_wait_time=1)
            for _ in range(3):  # 2.4 s in all, past the 2 s session lock
                time.sleep(0.8)
                receiver.session.renew_lock()
            receiver.complete_message(m)
            (m2,) = receiver.receive_messages(max_message_count=1, max_wait_time=1)
            assert str(m2) == "r2"
            receiver.complete_message(m2)


def test_async_session_receiver(sb: ServiceBusEmulator) -> None:
    async def scenario() -> tuple[str, list[str], bytes | None]:
        async with AsyncServiceBusClient.from_connection_string(sb.connection_string, retry_total=0, keep_alive=0) as c:
            async with c.get_queue_sender("sessions-aio") as sender:
                await sender.send_messages([ServiceBusMessage(f"m{i}", session_id="client-42") for i in range(4)])
            async with c.get_queue_receiver(
                "sessions-aio", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1
            ) as receiver:
                session = receiver.session
                await session.set_state(b"done")
                await session.renew_lock()
                got = []
                for m in await receiver.receive_messages(max_message_count=10, max_wait_time=1):
                    got.append(str(m))
                    await receiver.complete_message(m)
                return session.session_id, got, await session.get_state()

    sid, bodies, state = asyncio.run(scenario())
    assert sid == "client-42"
    assert bodies == ["m0", "m1", "m2", "m3"]
    assert state == b"done"
