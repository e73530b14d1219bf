"""`AutoLockRenewer` (sync and aio) keeps message and session locks alive on the emulator, well past the lock
duration, and calls its failure callback when renewal really fails: the broker lost the lock (`kill -9`), or
the entity was deleted under the receiver (the renewal is answered `amqp:not-found`, as in Azure).

The sync renewer renews from a thread pool whose threads share the receiver's connection; their transfer frames
reach the emulator out of delivery-id order (see `devstack/servicebus/framing.py`), which used to end the
connection and every renewal with it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.servicebus import AutoLockRenewer, ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import AutoLockRenewer as AsyncAutoLockRenewer
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import AutoLockRenewFailed, MessagingEntityNotFoundError

from tests.fixtures.servicebus import ServiceBusEmulator, ServiceBusFactory
from tests.integration.servicebus.conftest import queue, write_config
from tests.integration.servicebus.sbhelp import admin, bodies, client, take
from tests.support.wait import wait_until

LOCK = timedelta(seconds=5)  # the lock duration of the auto-renew queues
HELD = LOCK * 2  # how long each test keeps its locks: two lock durations (the first lock has long run out)


class RenewFailures:
    """An ``on_lock_renew_failure`` callback that keeps what it is given; ``called`` is set by the first call."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, Exception | None]] = []
        self.called = threading.Event()

    def __call__(self, renewable: Any, error: Exception | None) -> None:
        self.seen.append((renewable, error))
        self.called.set()


def _register(renewer: Any, receiver: Any, renewable: Any, on_failure: Any) -> datetime:
    """Hands ``renewable`` (a message or a session) to ``renewer`` for 60 s; the lock expiry it had then."""
    first: datetime | None = renewable.locked_until_utc
    assert first is not None
    renewer.register(receiver, renewable, max_lock_renewal_duration=60, on_lock_renew_failure=on_failure)
    return first


def _renewed_past(item: Any, first: datetime) -> bool:
    until = item.locked_until_utc
    return until is not None and until >= first + HELD


def test_message_locks_are_kept_past_two_lock_durations(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_queue_sender("auto-renew") as sender:
            sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(8)])
        failed = RenewFailures()
        with (
            AutoLockRenewer(max_workers=4) as renewer,
            c.get_queue_receiver("auto-renew", prefetch_count=8) as receiver,
        ):
            msgs: list[ServiceBusReceivedMessage] = []
            while len(msgs) < 8:
                msgs += receiver.receive_messages(max_message_count=8, max_wait_time=2)
            first = min(m.locked_until_utc for m in msgs if m.locked_until_utc is not None)
            for m in msgs:
                _register(renewer, receiver, m, failed)
            wait_until(lambda: all(_renewed_past(m, first) for m in msgs), 30, "eight message locks renewed")
            assert datetime.now(UTC) > first + LOCK  # the original locks have run out by now
            with c.get_queue_receiver("auto-renew", max_wait_time=0.5) as competitor:
                assert competitor.receive_messages(max_message_count=8, max_wait_time=0.5) == []
            for m in msgs:
                receiver.complete_message(m)
        assert failed.seen == []
        assert take(c, "auto-renew") == []


def test_session_lock_is_kept_past_two_lock_durations(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_queue_sender("auto-renew-session") as sender:
            sender.send_messages([ServiceBusMessage(f"s{i}", session_id="long-work") for i in range(3)])
        failed = RenewFailures()
        with (
            AutoLockRenewer() as renewer,
            c.get_queue_receiver("auto-renew-session", session_id="long-work", prefetch_count=3) as receiver,
        ):
            session = receiver.session
            first = _register(renewer, receiver, session, failed)
            msgs = receiver.receive_messages(max_message_count=3, max_wait_time=2)
            wait_until(lambda: _renewed_past(session, first), 30, "the session lock renewed")
            for m in msgs:
                receiver.complete_message(m)
        assert failed.seen == []
        assert bodies(msgs) == ["s0", "s1", "s2"]


def test_async_renewer_keeps_message_and_session_locks(sb: ServiceBusEmulator) -> None:
    async def scenario() -> tuple[list[str], list[str], list[Any]]:
        failures: list[Any] = []

        async def failed(renewable: Any, error: Exception | None) -> None:
            failures.append((renewable, error))

        async with AsyncServiceBusClient.from_connection_string(sb.connection_string, retry_total=1) as c:
            async with c.get_queue_sender("auto-renew-aio") as sender:
                await sender.send_messages([ServiceBusMessage(f"a{i}") for i in range(4)])
            async with c.get_queue_sender("auto-renew-session-aio") as sender:
                await sender.send_messages([ServiceBusMessage("x", session_id="aio")])
            async with AsyncAutoLockRenewer() as renewer:
                async with c.get_queue_receiver("auto-renew-aio", prefetch_count=4) as receiver:
                    msgs: list[ServiceBusReceivedMessage] = []
                    while len(msgs) < 4:
                        msgs += await receiver.receive_messages(max_message_count=4, max_wait_time=2)
                    first = min(m.locked_until_utc for m in msgs if m.locked_until_utc is not None)
                    for m in msgs:
                        _register(renewer, receiver, m, failed)
                    await _async_wait(lambda: all(_renewed_past(m, first) for m in msgs), 30)
                    for m in msgs:
                        await receiver.complete_message(m)
                async with c.get_queue_receiver("auto-renew-session-aio", session_id="aio") as receiver:
                    session = receiver.session
                    started = _register(renewer, receiver, session, failed)
                    got = await receiver.receive_messages(max_message_count=1, max_wait_time=2)
                    await _async_wait(lambda: _renewed_past(session, started), 30)
                    for m in got:
                        await receiver.complete_message(m)
        return bodies(msgs), bodies(got), failures

    messages, session_messages, failures = asyncio.run(scenario())
    assert sorted(messages) == ["a0", "a1", "a2", "a3"]
    assert session_messages == ["x"]
    assert failures == []


@contextmanager
def one_renewed_message(
    c: ServiceBusClient, queue: str, failed: RenewFailures
) -> Iterator[tuple[ServiceBusReceivedMessage, datetime]]:
    """One message sent to ``queue`` and received, its lock renewed by an AutoLockRenewer that reports to
    ``failed``; the message and its lock expiry when it was registered."""
    with c.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("job"))
    with AutoLockRenewer() as renewer, c.get_queue_receiver(queue, max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_message_count=1, max_wait_time=2)
        yield m, _register(renewer, receiver, m, failed)


def test_failure_callback_fires_when_the_broker_loses_the_lock(
    servicebus_factory: ServiceBusFactory, tmp_path: Path
) -> None:
    sb = servicebus_factory(write_config(tmp_path / "entities.json", [queue("work", LockDuration="PT3S")]))
    failed = RenewFailures()
    with client(sb, retry_total=0) as c, one_renewed_message(c, "work", failed) as (m, _first):
        sb.kill()  # the broker and every lock it held are gone
        sb.start()
        assert failed.called.wait(30), "the failure callback was not called"
    ((renewable, error),) = failed.seen
    assert renewable is m
    assert error is not None and m.auto_renew_error is error


def test_failure_callback_fires_when_the_queue_is_deleted_under_the_receiver(sb: ServiceBusEmulator) -> None:
    with admin(sb) as a:
        a.create_queue("renew-deleted", lock_duration="PT3S")
    failed = RenewFailures()
    with client(sb, retry_total=0) as c, one_renewed_message(c, "renew-deleted", failed) as (m, first):
        wait_until(lambda: m.locked_until_utc is not None and m.locked_until_utc > first, 10, "a first renewal")
        with admin(sb) as a:
            a.delete_queue("renew-deleted")
        assert failed.called.wait(15), "the failure callback was not called"
    ((renewable, error),) = failed.seen
    assert renewable is m
    assert isinstance(error, AutoLockRenewFailed) and m.auto_renew_error is error
    assert isinstance(error.inner_exception, MessagingEntityNotFoundError), repr(error.inner_exception)


def test_async_failure_callback_fires_when_the_session_queue_is_deleted(sb: ServiceBusEmulator) -> None:
    with admin(sb) as a:
        a.create_queue("renew-deleted-session-aio", lock_duration="PT3S", requires_session=True)

    async def scenario() -> tuple[Any, list[Any]]:
        failures: list[Any] = []

        async def failed(renewable: Any, error: Exception | None) -> None:
            failures.append((renewable, error))

        async with AsyncServiceBusClient.from_connection_string(sb.connection_string, retry_total=0) as c:
            async with c.get_queue_sender("renew-deleted-session-aio") as sender:
                await sender.send_messages(ServiceBusMessage("x", session_id="doomed"))
            async with (
                AsyncAutoLockRenewer() as renewer,
                c.get_queue_receiver("renew-deleted-session-aio", session_id="doomed", keep_alive=0) as receiver,
            ):
                session = receiver.session
                first = _register(renewer, receiver, session, failed)
                await _async_wait(lambda: session.locked_until_utc is not None and session.locked_until_utc > first, 10)
                with admin(sb) as a:
                    a.delete_queue("renew-deleted-session-aio")
                await _async_wait(lambda: bool(failures), 15)
        return session, failures

    session, failures = asyncio.run(scenario())
    ((renewable, error),) = failures
    assert renewable is session
    assert isinstance(error, AutoLockRenewFailed) and session.auto_renew_error is error
    assert isinstance(error.inner_exception, MessagingEntityNotFoundError), repr(error.inner_exception)


async def _async_wait(condition: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting on the renewer")
        await asyncio.sleep(0.1)
