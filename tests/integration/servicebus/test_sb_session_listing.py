"""`list_queue_sessions` / `list_subscription_sessions` (sync and aio), as the SDK documents them: sessions
with messages or stored state; or, with `state_updated_after`, those whose state changed after that time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.servicebus.sbhelp import client


def test_queue_sessions_with_messages_or_state_and_by_state_update(sb: ServiceBusEmulator) -> None:
    with client(sb) as c:
        assert list(c.list_queue_sessions("listed-sessions")) == []
        with c.get_queue_sender("listed-sessions") as sender:
            sender.send_messages([ServiceBusMessage(f"{sid}-1", session_id=sid) for sid in ("a", "b", "c")])
        with c.get_queue_receiver("listed-sessions", session_id="b", max_wait_time=1) as receiver:
            for m in receiver.receive_messages(max_message_count=5, max_wait_time=1):
                receiver.complete_message(m)  # b has no messages left ...
            receiver.session.set_state(b"checkpoint")  # ... but it has state
        before_update = datetime.now(UTC)
        with c.get_queue_receiver("listed-sessions", session_id="c", max_wait_time=1) as receiver:
            for m in receiver.receive_messages(max_message_count=5, max_wait_time=1):
                receiver.complete_message(m)  # c has neither messages nor state
        assert sorted(c.list_queue_sessions("listed-sessions")) == ["a", "b"]
        assert list(c.list_queue_sessions("listed-sessions", state_updated_after=before_update)) == []
        with c.get_queue_receiver("listed-sessions", session_id="a", max_wait_time=1) as receiver:
            receiver.session.set_state(b"a-state")
        assert list(c.list_queue_sessions("listed-sessions", state_updated_after=before_update)) == ["a"]
        long_ago = datetime.now(UTC) - timedelta(days=1)
        assert sorted(c.list_queue_sessions("listed-sessions", state_updated_after=long_ago)) == ["a", "b"]


def test_many_sessions_are_listed_page_by_page(sb: ServiceBusEmulator) -> None:
    sids = [f"s{i:03d}" for i in range(130)]  # the SDK asks for pages of 100
    with client(sb) as c:
        with c.get_topic_sender("session-topic") as sender:
            batch = sender.create_message_batch()
            for sid in sids:
                batch.add_message(ServiceBusMessage(sid, session_id=sid))
            sender.send_messages(batch)
        assert sorted(c.list_subscription_sessions("session-topic", "s")) == sids


def test_async_listing(sb: ServiceBusEmulator) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with AsyncServiceBusClient.from_connection_string(sb.connection_string, retry_total=1) as c:
            async with c.get_queue_sender("listed-sessions-aio") as sender:
                await sender.send_messages([ServiceBusMessage("x", session_id=sid) for sid in ("p", "q")])
            start = datetime.now(UTC)
            async with c.get_queue_receiver("listed-sessions-aio", session_id="q", max_wait_time=1) as receiver:
                await receiver.session.set_state(b"q")
            every = [sid async for sid in c.list_queue_sessions("listed-sessions-aio")]
            updated = [sid async for sid in c.list_queue_sessions("listed-sessions-aio", state_updated_after=start)]
            return sorted(every), updated

    assert asyncio.run(scenario()) == (["p", "q"], ["q"])
