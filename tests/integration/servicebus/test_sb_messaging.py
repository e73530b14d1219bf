"""Sending and receiving through the emulator with the real azure-servicebus SDK (sync and aio)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.servicebus.sbhelp import client, drain


def test_every_message_property_round_trips(sb: ServiceBusEmulator) -> None:
    scheduled_for = datetime.now(UTC) + timedelta(seconds=1)
    app = {"text": "héllo", "count": 42, "ratio": 0.5, "flag": True, "raw": b"\x00\x01"}
    sent = ServiceBusMessage(
        b"\x00binary body\xff",
        application_properties=app,
        content_type="application/octet-stream",
        correlation_id="corr-1",
        subject="the-subject",
        to="someone",
        reply_to="reply-queue",
        reply_to_session_id="reply-session",
        time_to_live=timedelta(minutes=5),
        message_id="msg-props-1",
        partition_key="pk-1",
        scheduled_enqueue_time_utc=scheduled_for,
    )
    before = datetime.now(UTC) - timedelta(seconds=1)
    with client(sb) as c:
        with c.get_queue_sender("props") as sender:
            sender.send_messages(sent)
        with c.get_queue_receiver("props", max_wait_time=5) as receiver:
            (got,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            locked_until = got.locked_until_utc
            receiver.complete_message(got)
    assert b"".join(got.body) == b"\x00binary body\xff"
    props = {k.decode(): v for k, v in got.application_properties.items()}
    # The SDK hands back AMQP strings as UTF-8 bytes, as it does against the cloud service.
    assert props == {"text": "héllo".encode(), "count": 42, "ratio": 0.5, "flag": True, "raw": b"\x00\x01"}
    assert got.content_type == "application/octet-stream"
    assert got.correlation_id == "corr-1"
    assert got.subject == "the-subject"
    assert got.to == "someone"
    assert got.reply_to == "reply-queue"
    assert got.reply_to_session_id == "reply-session"
    assert got.time_to_live == timedelta(minutes=5)
    assert got.message_id == "msg-props-1"
    assert got.partition_key == "pk-1"
    assert abs((got.scheduled_enqueue_time_utc - scheduled_for).total_seconds()) < 0.01
    assert got.sequence_number is not None and got.sequence_number >= 1
    assert got.enqueued_time_utc is not None and got.enqueued_time_utc >= scheduled_for - timedelta(seconds=1)
    assert got.enqueued_time_utc > before
    assert locked_until is not None and locked_until > got.enqueued_time_utc
    assert got.delivery_count == 0
    assert got.expires_at_utc == got.enqueued_time_utc + timedelta(minutes=5)


def test_send_single_list_and_batch(sb: ServiceBusEmulator) -> None:
    with client(sb) as c, c.get_queue_sender("batch") as sender:
        sender.send_messages(ServiceBusMessage("single"))
        sender.send_messages([ServiceBusMessage(f"list-{i}") for i in range(3)])
        batch = sender.create_message_batch()
        for i in range(100):
            batch.add_message(ServiceBusMessage(f"batch-{i}", application_properties={"i": i}))
        sender.send_messages(batch)
    bodies = drain(sb, "batch")
    assert bodies == ["single", "list-0", "list-1", "list-2", *[f"batch-{i}" for i in range(100)]]


def test_full_batch_raises_value_error(sb: ServiceBusEmulator) -> None:
    with client(sb) as c, c.get_queue_sender("batch") as sender:
        batch = sender.create_message_batch()
        with pytest.raises(ValueError):
            for _ in range(1000):
                batch.add_message(ServiceBusMessage(b"x" * 1024))
        assert 100 < len(batch) < 1000  # the emulator's 256 KiB limit reached the SDK
        sender.send_messages(batch)
    assert len(drain(sb, "batch")) == len(batch)


def test_async_send_batch_receive_complete(sb: ServiceBusEmulator) -> None:
    async def scenario() -> list[str]:
        async with AsyncServiceBusClient.from_connection_string(sb.connection_string, retry_total=1, keep_alive=0) as c:
            async with c.get_queue_sender("aio") as sender:
                batch = await sender.create_message_batch()
                for i in range(20):
                    batch.add_message(ServiceBusMessage(f"a{i}"))
                await sender.send_messages(batch)
                await sender.send_messages(ServiceBusMessage("last"))
            got: list[str] = []
            async with c.get_queue_receiver("aio", max_wait_time=2) as receiver:
                while len(got) < 21:
                    msgs = await receiver.receive_messages(max_message_count=50, max_wait_time=2)
                    if not msgs:
                        break
                    for m in msgs:
                        got.append(str(m))
                        await receiver.complete_message(m)
            return got

    assert asyncio.run(scenario()) == [*[f"a{i}" for i in range(20)], "last"]
    assert drain(sb, "aio", wait=0.5) == []


def test_scheduled_message_arrives_later_and_cancel_removes_it(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_queue_sender("scheduled") as sender:
            at = datetime.now(UTC) + timedelta(seconds=2)
            keep = sender.schedule_messages(ServiceBusMessage("keep"), at)
            drop = sender.schedule_messages([ServiceBusMessage("drop")], at)
            assert keep[0] != drop[0]
            sender.cancel_scheduled_messages(drop)
        with c.get_queue_receiver("scheduled", max_wait_time=1) as receiver:
            peeked = receiver.peek_messages(max_message_count=10)
            assert [str(m) for m in peeked] == ["keep"]
            assert receiver.receive_messages(max_wait_time=0.5) == []
            started = time.monotonic()
            got = receiver.receive_messages(max_message_count=5, max_wait_time=5)
            assert [str(m) for m in got] == ["keep"]
            assert got[0].sequence_number == keep[0]
            assert time.monotonic() - started < 4.5
            receiver.complete_message(got[0])


def test_async_schedule_and_cancel(sb: ServiceBusEmulator) -> None:
    async def scenario() -> list[str]:
        async with AsyncServiceBusClient.from_connection_string(sb.connection_string, retry_total=1, keep_alive=0) as c:
            async with c.get_queue_sender("scheduled") as sender:
                at = datetime.now(UTC) + timedelta(seconds=1)
                seqs = await sender.schedule_messages([ServiceBusMessage("x1"), ServiceBusMessage("x2")], at)
                await sender.cancel_scheduled_messages(seqs[0])
            async with c.get_queue_receiver("scheduled", max_wait_time=3) as receiver:
                got = await receiver.receive_messages(max_message_count=5, max_wait_time=3)
                for m in got:
                    await receiver.complete_message(m)
                return [str(m) for m in got]

    assert asyncio.run(scenario()) == ["x2"]


def test_receive_and_delete_removes_on_delivery(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_queue_sender("delete-mode") as sender:
            sender.send_messages([ServiceBusMessage(f"d{i}") for i in range(5)])
        with c.get_queue_receiver(
            "delete-mode", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=2
        ) as receiver:
            got = receiver.receive_messages(max_message_count=5, max_wait_time=2)
            assert [str(m) for m in got] == [f"d{i}" for i in range(5)]
    assert drain(sb, "delete-mode", wait=0.5) == []


def test_peek_does_not_lock_and_pages(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_queue_sender("peek") as sender:
            sender.send_messages([ServiceBusMessage(f"p{i}") for i in range(6)])
        with c.get_queue_receiver("peek", max_wait_time=1) as receiver:
            first = receiver.peek_messages(max_message_count=4)
            rest = receiver.peek_messages(max_message_count=4)
            assert [str(m) for m in first] == ["p0", "p1", "p2", "p3"]
            assert [str(m) for m in rest] == ["p4", "p5"]
            again = receiver.peek_messages(max_message_count=1, sequence_number=first[2].sequence_number)
            assert [str(m) for m in again] == ["p2"]
    assert drain(sb, "peek") == [f"p{i}" for i in range(6)]


def test_prefetch_delivers_everything_once(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        with c.get_queue_sender("prefetch") as sender:
            sender.send_messages([ServiceBusMessage(f"f{i}") for i in range(30)])
        with c.get_queue_receiver("prefetch", prefetch_count=50, max_wait_time=1) as receiver:
            seen = []
            for m in receiver:
                seen.append(str(m))
                receiver.complete_message(m)
    assert seen == [f"f{i}" for i in range(30)]
    assert drain(sb, "prefetch", wait=0.5) == []


def test_duplicate_message_ids_are_dropped_within_the_window(sb: ServiceBusEmulator) -> None:
    first_id, second_id = str(uuid.uuid4()), str(uuid.uuid4())
    with client(sb) as c, c.get_queue_sender("dedup") as sender:
        sender.send_messages(ServiceBusMessage("one", message_id=first_id))
        sender.send_messages(ServiceBusMessage("one again", message_id=first_id))
        batch = sender.create_message_batch()
        batch.add_message(ServiceBusMessage("two", message_id=second_id))
        batch.add_message(ServiceBusMessage("two again", message_id=second_id))
        sender.send_messages(batch)
    assert drain(sb, "dedup") == ["one", "two"]
