"""The host's session accepts (``SessionAcceptor``) with the real SDK against the emulator.

One thread's accepts share one AMQP connection and its ``$cbs`` links, each attaching only its session link; a
token is put when the connection opens and again when it is due (here: expired while no receiver was open); a "no
session" answer keeps the connection, an accept whose kept connection died with the broker goes through on a new
one, and nothing is lost or taken twice on the way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest
from azure.core.credentials import AccessToken
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage, ServiceBusReceiver
from azure.servicebus.exceptions import OperationTimeoutError

from devstack.functions_host.session_receiver import SessionAcceptor
from devstack.ports import LOOPBACK
from devstack.servicebus.opcounts import read_operations
from tests.fixtures.servicebus import KEY, KEY_NAME, ServiceBusEmulator, ServiceBusFactory
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
    return _count(sb, "connections opened")


def _count(sb: ServiceBusEmulator, operation: str) -> int:
    return Counter(read_operations(sb.data_dir))[operation]


class _ShortLivedSas:
    """The SDK's shared-key credential, with tokens that expire after ``lifetime`` seconds instead of an hour."""

    token_type = b"servicebus.windows.net:sastoken"

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.expiries: list[int] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        audience, expiry = scopes[0], int(time.time()) + self.lifetime
        signed = hmac.new(KEY.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
        fields = {"sr": audience, "sig": base64.b64encode(signed), "se": str(expiry), "skn": KEY_NAME}
        self.expiries.append(expiry)
        return AccessToken(f"SharedAccessSignature {urlencode(fields)}", expiry)


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


def test_accepts_on_one_connection_attach_the_cbs_links_and_put_the_token_once(
    servicebus_factory: ServiceBusFactory, tmp_path: Path
) -> None:
    sb = _emulator(servicebus_factory, tmp_path)
    sessions = [f"s{i}" for i in range(5)]
    with _client(sb) as client:
        _send(client, sessions, per_session=2)
        wait_until(lambda: _count(sb, "request send") >= 1, timeout=10, what="the send to be counted")
        links, tokens = _count(sb, "links attached"), _count(sb, "request cbs")
        with SessionAcceptor() as acceptor:
            taken = dict(_take_session(acceptor, client) for _ in sessions)
    assert taken == {s: [f"{s}-0", f"{s}-1"] for s in sessions}
    # one session link per accept, the connection's $cbs pair once, one token for the entity
    wait_until(lambda: _count(sb, "links attached") >= links + len(sessions) + 2, timeout=10, what="link counts")
    assert _count(sb, "links attached") == links + len(sessions) + 2
    assert _count(sb, "request cbs") == tokens + 1


def test_a_token_that_expired_while_no_receiver_was_open_is_put_again_before_the_next_accept(
    servicebus_factory: ServiceBusFactory, tmp_path: Path
) -> None:
    sb = _emulator(servicebus_factory, tmp_path)
    credential = _ShortLivedSas(lifetime=3)
    with _client(sb) as sender_client:
        _send(sender_client, ["early", "late"], per_session=1)
    with (
        ServiceBusClient(f"{LOOPBACK}:{sb.port}", credential, use_tls=False, retry_total=0) as client,
        SessionAcceptor() as acceptor,
    ):
        first = _take_session(acceptor, client)
        wait_until(lambda: _count(sb, "request cbs") >= 2, timeout=10, what="the first token to be counted")
        tokens, connections = _count(sb, "request cbs"), _connections(sb)
        put = credential.expiries[-1]
        wait_until(lambda: time.time() > put + 1, timeout=10, what="the connection's token to expire")
        # the emulator refuses a link on a connection without a valid token for its entity, as Service Bus does
        second = _take_session(acceptor, client)
    assert sorted([first, second]) == [("early", ["early-0"]), ("late", ["late-0"])]
    wait_until(lambda: _count(sb, "request cbs") >= tokens + 1, timeout=10, what="the second token to be counted")
    assert _count(sb, "request cbs") == tokens + 1
    assert _connections(sb) == connections  # the same connection, authorized again
