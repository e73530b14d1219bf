"""Peek-lock settlement, locks, delivery counts, dead-lettering and TTL against the emulator."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError, MessageNotFoundError

from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.servicebus.sbhelp import admin, client, drain, take
from tests.support.wait import wait_until


def send(sb: ServiceBusEmulator, queue: str, *bodies: str, **kwargs: object) -> None:
    with client(sb) as c, c.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(b, **kwargs) for b in bodies])  # type: ignore[arg-type]


def receive_dlq(sb: ServiceBusEmulator, queue: str, wait: float = 1.0) -> list[ServiceBusReceivedMessage]:
    with client(sb) as c:
        return take(c, queue, dead_letter=True, wait=wait)


def test_complete_abandon_defer_dead_letter(sb: ServiceBusEmulator) -> None:
    send(sb, "settle", "complete-me", "abandon-me", "defer-me", "kill-me")
    with client(sb) as c, c.get_queue_receiver("settle", max_wait_time=2) as receiver:
        msgs = {str(m): m for m in receiver.receive_messages(max_message_count=4, max_wait_time=2)}
        assert set(msgs) == {"complete-me", "abandon-me", "defer-me", "kill-me"}
        receiver.complete_message(msgs["complete-me"])
        receiver.abandon_message(msgs["abandon-me"])
        receiver.defer_message(msgs["defer-me"])
        receiver.dead_letter_message(msgs["kill-me"], reason="bad-input", error_description="row 3 is broken")

        (again,) = receiver.receive_messages(max_message_count=5, max_wait_time=2)
        assert str(again) == "abandon-me"
        assert again.delivery_count == 1
        receiver.complete_message(again)

        (deferred,) = receiver.receive_deferred_messages([msgs["defer-me"].sequence_number])
        assert str(deferred) == "defer-me"
        assert deferred.locked_until_utc is not None
        receiver.renew_message_lock(deferred)
        receiver.complete_message(deferred)
    with client(sb, retry_total=0) as c, c.get_queue_receiver("settle", max_wait_time=2) as receiver:
        with pytest.raises(MessageNotFoundError):
            receiver.receive_deferred_messages([msgs["defer-me"].sequence_number])
        assert receiver.receive_messages(max_wait_time=0.5) == []

    (dead,) = receive_dlq(sb, "settle")
    assert str(dead) == "kill-me"
    assert dead.dead_letter_reason == "bad-input"
    assert dead.dead_letter_error_description == "row 3 is broken"
    assert dead.dead_letter_source == "settle"
    assert dead.sequence_number == msgs["kill-me"].sequence_number


def test_async_settlement_and_dead_letter(sb: ServiceBusEmulator) -> None:
    async def scenario() -> tuple[list[str], list[str | None]]:
        async with AsyncServiceBusClient.from_connection_string(sb.connection_string, retry_total=1, keep_alive=0) as c:
            async with c.get_queue_sender("settle-aio") as sender:
                await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(4)])
            async with c.get_queue_receiver("settle-aio", max_wait_time=2) as receiver:
                msgs = await receiver.receive_messages(max_message_count=4, max_wait_time=2)
                await receiver.complete_message(msgs[0])
                renewed = await receiver.renew_message_lock(msgs[1])
                assert renewed > datetime.now(UTC)
                await receiver.abandon_message(msgs[1])
                await receiver.defer_message(msgs[2])
                await receiver.dead_letter_message(msgs[3], reason="why", error_description="because")
                redelivered = await receiver.receive_messages(max_message_count=5, max_wait_time=2)
                for m in redelivered:
                    await receiver.complete_message(m)
                deferred = await receiver.receive_deferred_messages([msgs[2].sequence_number])
                for m in deferred:
                    await receiver.complete_message(m)
            async with c.get_queue_receiver("settle-aio", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
                dead = await dlq.receive_messages(max_message_count=5, max_wait_time=2)
                for m in dead:
                    await dlq.complete_message(m)
            return [str(m) for m in redelivered + deferred], [m.dead_letter_reason for m in dead]

    bodies, reasons = asyncio.run(scenario())
    assert bodies == ["m1", "m2"]
    assert reasons == ["why"]
    assert drain(sb, "settle-aio", wait=0.5) == []


def test_renew_lock_keeps_the_message_locked(sb: ServiceBusEmulator) -> None:
    send(sb, "renew", "keep-me")
    with (
        client(sb) as c,
        c.get_queue_receiver("renew", max_wait_time=2) as receiver,
        client(sb) as other,
        other.get_queue_receiver("renew", max_wait_time=0.3) as competitor,
    ):
        (m,) = receiver.receive_messages(max_wait_time=2)
        first = m.locked_until_utc
        for _ in range(3):  # 2.4 s in all, past the 2 s lock duration
            time.sleep(0.8)
            new = receiver.renew_message_lock(m)
            assert new > first
        assert competitor.receive_messages(max_wait_time=0.3) == []
        receiver.complete_message(m)


def test_lock_expiry_redelivers_with_higher_delivery_count(sb: ServiceBusEmulator) -> None:
    send(sb, "expiring-lock", "slow")
    with client(sb) as c, c.get_queue_receiver("expiring-lock", max_wait_time=3) as receiver:
        (first,) = receiver.receive_messages(max_wait_time=2)
        assert first.delivery_count == 0
        # Neither settled nor renewed: this receive waits until the 1 s lock expires and the message comes back.
        (second,) = receiver.receive_messages(max_wait_time=3)
        assert str(second) == "slow"
        assert second.delivery_count == 1
        assert second.lock_token != first.lock_token
        receiver.complete_message(second)


def test_settling_after_the_lock_expired_raises_lock_lost(sb: ServiceBusEmulator) -> None:
    send(sb, "lock-lost", "late")
    with client(sb, retry_total=0) as c, c.get_queue_receiver("lock-lost", max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_wait_time=2)
        # Redelivered once its 1 s lock expires (this receive waits for that): the first holder must not be able
        # to complete.
        (again,) = receiver.receive_messages(max_wait_time=3)
        m._locked_until_utc = datetime.now(UTC) + timedelta(minutes=1)  # defeat the SDK's local expiry check
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(m)
        receiver.complete_message(again)


def test_max_delivery_count_moves_to_dead_letter_queue(sb: ServiceBusEmulator) -> None:
    send(sb, "poison", "poison-pill")
    with client(sb) as c, c.get_queue_receiver("poison", max_wait_time=2) as receiver:
        for attempt in range(3):
            (m,) = receiver.receive_messages(max_wait_time=2)
            assert m.delivery_count == attempt
            receiver.abandon_message(m)
        assert receiver.receive_messages(max_wait_time=0.5) == []
    (dead,) = receive_dlq(sb, "poison")
    assert str(dead) == "poison-pill"
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert dead.delivery_count == 3


def test_expired_messages_are_dead_lettered_or_dropped(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_queue_sender("ttl-dlq") as sender:
            sender.send_messages(ServiceBusMessage("stale"))
            sender.send_messages(ServiceBusMessage("own-ttl", time_to_live=timedelta(milliseconds=300)))
        with c.get_queue_sender("ttl-drop") as sender:
            sender.send_messages(ServiceBusMessage("stale"))

        def expired() -> bool:
            with admin(sb) as management:
                dlq = management.get_queue_runtime_properties("ttl-dlq")
                drop = management.get_queue_runtime_properties("ttl-drop")
            return (dlq.active_message_count, dlq.dead_letter_message_count, drop.total_message_count) == (0, 2, 0)

        wait_until(expired, 10, "the messages to expire (1 s time to live)")
        assert take(c, "ttl-dlq", wait=0.2) == []
        assert take(c, "ttl-drop", wait=0.2) == []
        dead = take(c, "ttl-dlq", dead_letter=True, wait=1, count=2)
        assert sorted(str(m) for m in dead) == ["own-ttl", "stale"]
        assert {m.dead_letter_reason for m in dead} == {"TTLExpiredException"}
        assert take(c, "ttl-drop", dead_letter=True, wait=0.2) == []
