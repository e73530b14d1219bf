"""A session lock handed straight to a waiting next-available receiver is still tracked by the emulator.

When a session's lock ends (its receiver detaches, or the lock expires) while another receiver is waiting for
any session, the emulator hands the session over at once. The new holder's lock must then behave like any
other: released when that receiver goes away, so the session's remaining messages reach the next receiver.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage

from tests.fixtures.servicebus import ServiceBusFactory
from tests.integration.servicebus.conftest import queue, write_config
from tests.integration.servicebus.sbhelp import bodies, client

LOCK_SECONDS = 2


@pytest.mark.parametrize("first_holder_ends", ["detach", "lock-expiry"])
def test_session_taken_over_by_a_waiting_receiver_is_released_when_it_leaves(
    servicebus_factory: ServiceBusFactory, tmp_path: Path, first_holder_ends: str
) -> None:
    config = write_config(
        tmp_path / "entities.json", [queue("handover", RequiresSession=True, LockDuration=f"PT{LOCK_SECONDS}S")]
    )
    sb = servicebus_factory(config)
    with client(sb, retry_total=0) as c:
        with c.get_queue_sender("handover") as sender:
            sender.send_messages([ServiceBusMessage(f"m{i}", session_id="A") for i in range(3)])

        first = c.get_queue_receiver("handover", session_id="A", max_wait_time=1)
        first.__enter__()
        taken: dict[str, str] = {}

        def wait_for_any_session() -> None:
            # Its own client: SDK clients are not shared across threads.
            with (
                client(sb, retry_total=0) as waiting_client,
                waiting_client.get_queue_receiver(
                    "handover", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=4 * LOCK_SECONDS
                ) as second,
            ):
                taken["session"] = str(second.session.session_id)
                (message,) = second.receive_messages(max_message_count=1, max_wait_time=2)
                second.complete_message(message)
                taken["message"] = str(message)

        waiter = threading.Thread(target=wait_for_any_session)
        waiter.start()
        time.sleep(1.0)  # the second receiver is now waiting: session A is the only one and it is locked
        if first_holder_ends == "detach":
            first.__exit__(None, None, None)
        waiter.join(6 * LOCK_SECONDS)
        assert not waiter.is_alive()
        assert taken == {"session": "A", "message": "m0"}
        if first_holder_ends == "lock-expiry":
            first.__exit__(None, None, None)

        # The second receiver has gone: session A is free again and its other messages are delivered.
        deadline = time.monotonic() + LOCK_SECONDS
        with c.get_queue_receiver("handover", session_id="A", max_wait_time=1) as third:
            got = third.receive_messages(max_message_count=5, max_wait_time=2)
            for message in got:
                third.complete_message(message)
        assert time.monotonic() < deadline + 2
        assert bodies(got) == ["m1", "m2"]
