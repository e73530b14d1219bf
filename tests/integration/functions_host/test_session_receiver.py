"""The host's session accepts (``SessionAcceptor``) with the real SDK against the emulator.

One thread's accepts share one AMQP connection, each with its own token and links; a "no session" answer keeps
the connection, an accept whose kept connection died with the broker goes through on a new one, and nothing is
lost or taken twice on the way.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage, ServiceBusReceiver
from azure.servicebus.exceptions import OperationTimeoutError

from devstack.functions_host.session_receiver import SessionAcceptor
from devstack.servicebus.opcounts import read_operations
from tests.fixtures.servicebus import ServiceBusEmulator, ServiceBusFactory
from tests.integration.servicebus.conftest import queue, write_config
from tests.support.wait import wait_until

QUEUE = "accepts"


def _emulator(factory: ServiceBusFactory, tmp_path: Path) -> ServiceBusEmulator:
    return factory(write_config(tmp_path / "entities.json", [queue(QUEUE, RequiresSession=True, LockDuration="PT30S")]))


def _client(sb: ServiceBusEmulator) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(sb.connection_string, retry_total=0)


def _next_session(client: ServiceBusClient, wait: float = 2) -> ServiceBusReceiver:
    return client.get_queue_receiver(QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=wait, keep_alive=0)


def _send(client: ServiceBusClient, sessions: list[str], per_session: int) -> None:
    with client.get_queue_sender(QUEUE, keep_alive=0) as sender:
        batch = sender.create_message_batch()
        for index in range(per_session):
            for session in sessions:
                batch.add_message(ServiceBusMessage(f"{session}-{index}", session_id=session))
        sender.send_messages(batch)


def _take_session(acceptor: SessionAcceptor, client: ServiceBusClient) -> tuple[str, list[str]]:
    """Accepts the next session and completes all its messages; its id and the bodies in order."""
    receiver = acceptor.accept(lambda: _next_session(client), timeout=10)
    with receiver:
        session_id = str(receiver.session.session_id)
        taken: list[str] = []
        while messages := receiver.receive_messages(max_message_count=10, max_wait_time=0.5):
            for message in messages:
                receiver.complete_message(message)
                taken.append(str(message))
    return session_id, taken


def _connections(sb: ServiceBusEmulator) -> int:
    return Counter(read_operations(sb.data_dir))["connections opened"]


def test_sessions_accepted_one_after_another_share_one_connection_in_order(
    servicebus_factory: ServiceBusFactory, tmp_path: Path
) -> None:
    sb = _emulator(servicebus_factory, tmp_path)
    sessions = [f"s{i}" for i in range(6)]
    with _client(sb) as client:
        _send(client, sessions, per_session=3)
        wait_until(lambda: _connections(sb) >= 1, timeout=10, what="the sender's connection to be counted")
        before = _connections(sb)
        with SessionAcceptor() as acceptor:
            taken = dict(_take_session(acceptor, client) for _ in sessions)
            # nothing left: the broker answers "no session" and the connection stays usable
            with pytest.raises(OperationTimeoutError):
                acceptor.accept(lambda: _next_session(client, wait=1), timeout=10)
            _send(client, ["late"], per_session=2)
            late_id, late = _take_session(acceptor, client)
    assert taken == {s: [f"{s}-{i}" for i in range(3)] for s in sessions}
    assert (late_id, late) == ("late", ["late-0", "late-1"])
    # the six accepts, the empty one and the late one: one connection (the sender's second one apart)
    wait_until(lambda: _connections(sb) >= before + 2, timeout=10, what="the connection counts")
    assert _connections(sb) == before + 2


def test_an_accept_after_the_broker_restarted_goes_through_on_a_new_connection(
    servicebus_factory: ServiceBusFactory, tmp_path: Path
) -> None:
    sb = _emulator(servicebus_factory, tmp_path)
    with _client(sb) as client, SessionAcceptor() as acceptor:
        _send(client, ["a", "b"], per_session=1)
        first_id, first = _take_session(acceptor, client)
        sb.kill()
        sb.start()
        # the kept connection died with the broker (kill -9): the accept replaces it instead of failing
        second_id, second = _take_session(acceptor, client)
        with pytest.raises(OperationTimeoutError):
            acceptor.accept(lambda: _next_session(client, wait=1), timeout=10)
    assert {first_id: first, second_id: second} == {"a": ["a-0"], "b": ["b-0"]}
