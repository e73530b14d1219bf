"""Accepting the next available session forgets the sessions that hold nothing instead of walking them forever."""

from __future__ import annotations

from pathlib import Path

from proton import Message

from devstack.servicebus.broker import Broker
from devstack.servicebus.codec import parse_message
from devstack.servicebus.config import parse_config
from devstack.servicebus.store import Store

CONFIG = {
    "UserConfig": {
        "Namespaces": [{"Name": "ns", "Queues": [{"Name": "q", "Properties": {"RequiresSession": True}}], "Topics": []}]
    }
}


class _Receiver:
    """A stand-in for a receiver link: the broker only records it as a session's owner here."""


def _broker(tmp_path: Path) -> Broker:
    return Broker(parse_config(CONFIG), Store(tmp_path))


def _send(broker: Broker, session_id: str) -> None:
    encoded = Message(body="m", group_id=session_id).encode()
    broker.send(broker.targets["q"], [parse_message(encoded)], lambda seqs: None)
    broker.store.flush()


def test_next_available_skips_and_forgets_sessions_with_nothing_in_them(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    sq = broker.subqueues["q"]
    for index in range(50):
        sq.session(f"done-{index}")  # ids seen before whose messages were all settled
    kept = sq.session("with-state")
    kept.state, kept.state_updated = b"s", 1
    held = sq.session("held")
    held.owner = _Receiver()
    _send(broker, "ready")

    assert broker.acquire_session(sq, _Receiver(), None) == "ready"
    assert set(sq.sessions) == {"with-state", "held", "ready"}
    assert broker.acquire_session(sq, _Receiver(), None) is None

    # a forgotten id comes back with its next message, and is accepted like any other
    _send(broker, "done-7")
    assert broker.acquire_session(sq, _Receiver(), None) == "done-7"
