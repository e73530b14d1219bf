"""The emulator counts the operations it serves (what the pipeline benchmark reports per file)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from azure.servicebus import ServiceBusMessage

from devstack.servicebus.opcounts import read_operations
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.servicebus.sbhelp import client, drain
from tests.support.wait import wait_until


def test_a_batch_sent_and_completed_is_counted_by_kind(sb: ServiceBusEmulator) -> None:
    drain(sb, "batch")
    before = Counter(read_operations(sb.data_dir))
    with client(sb) as c:
        with c.get_queue_sender("batch") as sender:
            batch = sender.create_message_batch()
            for body in ("a", "b", "c"):
                batch.add_message(ServiceBusMessage(body))
            sender.send_messages(batch)
        with c.get_queue_receiver("batch", max_wait_time=2) as receiver:
            received = []
            while len(received) < 3 and (more := receiver.receive_messages(max_message_count=3, max_wait_time=2)):
                received += more
            for message in received:
                receiver.complete_message(message)
    assert len(received) == 3

    def grown() -> Counter[str]:
        now = Counter(read_operations(sb.data_dir))
        now.subtract(before)
        return now

    wait_until(lambda: grown()["settle complete"] >= 3, timeout=10, what="the emulator's counts of the completions")
    counts = grown()
    assert counts["messages in"] == 3
    assert counts["request send"] == 1  # one batch, one transfer
    assert counts["messages out"] == 3
    assert counts["settle complete"] == 3
    assert counts["connections opened"] >= 1
    assert counts["request cbs"] >= 2  # a token for the sender's and for the receiver's entity

    shown = subprocess.run(
        [sys.executable, "-m", "devstack.servicebus", "stats", "--data", str(sb.data_dir)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "settle complete" in shown.stdout
