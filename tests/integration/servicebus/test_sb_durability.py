"""Crash safety: after `kill -9` and a restart on the same data dir nothing acknowledged is lost,
nothing completed comes back, and locks held at the crash are free again. Also the `stats` command."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from tests.fixtures.servicebus import REPO, ServiceBusFactory
from tests.integration.servicebus.conftest import queue, subscription, write_config
from tests.integration.servicebus.sbhelp import bodies, client, take


def test_kill_9_loses_nothing_acknowledged_and_releases_locks(
    servicebus_factory: ServiceBusFactory, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "entities.json",
        [queue("work", LockDuration="PT5M"), queue("later"), queue("sess", RequiresSession=True, LockDuration="PT5M")],
        [{"Name": "fan", "Properties": {}, "Subscriptions": [subscription("a"), subscription("b")]}],
    )
    sb = servicebus_factory(config)
    sent = [f"m{i}" for i in range(300)]
    with client(sb) as c:
        with c.get_queue_sender("work") as sender:
            for start in range(0, 300, 100):
                batch = sender.create_message_batch()
                for body in sent[start : start + 100]:
                    batch.add_message(ServiceBusMessage(body))
                sender.send_messages(batch)
        with c.get_topic_sender("fan") as sender:
            sender.send_messages([ServiceBusMessage("f1"), ServiceBusMessage("f2")])
        with c.get_queue_sender("sess") as sender:
            sender.send_messages([ServiceBusMessage("s1", session_id="X"), ServiceBusMessage("s2", session_id="X")])
        with c.get_queue_receiver("sess", session_id="X") as r:
            r.session.set_state(b"halfway")
            (first,) = r.receive_messages(max_message_count=1, max_wait_time=2)
            r.complete_message(first)
        receiver = c.get_queue_receiver("work", prefetch_count=0)
        receiver.__enter__()
        completed, locked = [], []
        for m in receiver.receive_messages(max_message_count=50, max_wait_time=2):
            if len(completed) < 30:
                receiver.complete_message(m)
                completed.append(str(m))
            else:
                locked.append(str(m))  # left locked (5 minute lock) when the emulator dies
        assert len(completed) == 30 and len(locked) == 20

        sb.kill()
        sb.start()
        with contextlib.suppress(ServiceBusError):  # its connection died with the emulator
            receiver.close()

    with client(sb) as c:
        remaining = bodies(take(c, "work", wait=1))
        assert sorted(remaining, key=lambda b: int(b[1:])) == sent[30:]
        assert set(locked) <= set(remaining)
        assert bodies(take(c, "fan", "a")) == ["f1", "f2"]
        assert bodies(take(c, "fan", "b")) == ["f1", "f2"]
        with c.get_queue_receiver("sess", session_id="X", max_wait_time=1) as r:
            assert r.session.get_state() == b"halfway"
            assert bodies(r.receive_messages(max_message_count=5, max_wait_time=1)) == ["s2"]

        # Sequence numbers keep counting after the restart.
        with c.get_queue_sender("later") as sender:
            sender.send_messages(ServiceBusMessage("before"))
    sb.stop()
    sb.start()
    with client(sb) as c:
        with c.get_queue_sender("later") as sender:
            sender.send_messages(ServiceBusMessage("after"))
        got = take(c, "later")
        assert bodies(got) == ["before", "after"]
        assert got[0].sequence_number < got[1].sequence_number


def test_stats_reads_counts_without_the_server(servicebus_factory: ServiceBusFactory, tmp_path: Path) -> None:
    config = write_config(tmp_path / "entities.json", [queue("counted", LockDuration="PT30S")])
    sb = servicebus_factory(config)
    with client(sb) as c:
        with c.get_queue_sender("counted") as sender:
            sender.send_messages([ServiceBusMessage(f"c{i}") for i in range(5)])
            sender.schedule_messages(ServiceBusMessage("s"), datetime.now(UTC) + timedelta(hours=1))
        with c.get_queue_receiver("counted", prefetch_count=10) as r:
            msgs = r.receive_messages(max_message_count=2, max_wait_time=2)
            r.defer_message(msgs[0])
            r.dead_letter_message(msgs[1], reason="test")
    assert sb.stop() == 0
    out = subprocess.run(
        [sys.executable, "-m", "devstack.servicebus", "stats", "--data", str(sb.data_dir)],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    row = next(line.split() for line in out.stdout.splitlines() if line.startswith("counted"))
    assert row == ["counted", "3", "1", "1", "1"]
