"""Bad input never takes the emulator down: unknown entities, bad tokens, oversized messages, garbage
bytes, dropped sockets, too many links. Each case ends with a normal client still being served."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from azure.core.credentials import AzureSasCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusQuotaExceededError,
)

from tests.fixtures.servicebus import KEY, KEY_NAME, REPO, ServiceBusEmulator, ServiceBusFactory, connection_string
from tests.integration.servicebus.conftest import queue, write_config
from tests.integration.servicebus.sbhelp import bodies, client, take


def still_serves(sb: ServiceBusEmulator) -> None:
    body = f"alive-{time.monotonic_ns()}"
    with client(sb) as c:
        with c.get_queue_sender("plain") as sender:
            sender.send_messages(ServiceBusMessage(body))
        assert bodies(take(c, "plain")) == [body]


def test_unknown_entity_raises_not_found(sb: ServiceBusEmulator) -> None:
    with client(sb, retry_total=0) as c:
        with pytest.raises(MessagingEntityNotFoundError), c.get_queue_sender("no-such-queue") as sender:
            sender.send_messages(ServiceBusMessage("x"))
        with pytest.raises(MessagingEntityNotFoundError), c.get_queue_receiver("no-such-queue") as receiver:
            receiver.receive_messages(max_wait_time=1)
        with (
            pytest.raises(MessagingEntityNotFoundError),
            c.get_subscription_receiver("events", "no-such-sub") as receiver,
        ):
            receiver.receive_messages(max_wait_time=1)
    still_serves(sb)


def sas_token(audience: str, expiry: int, key: str = KEY) -> str:
    signed = hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
    sig = quote_plus(base64.b64encode(signed).decode())
    return f"SharedAccessSignature sr={quote_plus(audience)}&sig={sig}&se={expiry}&skn={KEY_NAME}"


def test_wrong_key_and_expired_token_are_refused(sb: ServiceBusEmulator) -> None:
    wrong = ServiceBusClient.from_connection_string(
        connection_string(sb.port, key="not-the-key"), retry_total=0, keep_alive=0
    )
    with wrong, pytest.raises(ServiceBusAuthenticationError), wrong.get_queue_sender("plain") as sender:
        sender.send_messages(ServiceBusMessage("x"))

    audience = f"sb://127.0.0.1:{sb.port}/plain"
    for expiry, expect_ok in ((int(time.time()) - 60, False), (int(time.time()) + 600, True)):
        credential = AzureSasCredential(sas_token(audience, expiry))
        c = ServiceBusClient(f"127.0.0.1:{sb.port}", credential, use_tls=False, retry_total=0)
        with c:
            if expect_ok:
                with c.get_queue_sender("plain") as sender:
                    sender.send_messages(ServiceBusMessage("signed-by-hand"))
            else:
                with pytest.raises(ServiceBusAuthenticationError), c.get_queue_sender("plain") as sender:
                    sender.send_messages(ServiceBusMessage("x"))
    with client(sb) as c:
        assert bodies(take(c, "plain")) == ["signed-by-hand"]


def test_message_over_the_size_limit_is_refused(sb: ServiceBusEmulator) -> None:
    with client(sb, retry_total=0) as c, c.get_queue_sender("plain") as sender:
        with pytest.raises(MessageSizeExceededError):
            sender.send_messages(ServiceBusMessage(b"x" * (300 * 1024)))
        sender.send_messages(ServiceBusMessage("small"))
    with client(sb) as c:
        assert bodies(take(c, "plain")) == ["small"]


def test_garbage_and_dropped_sockets_do_not_hurt(sb: ServiceBusEmulator) -> None:
    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", sb.port), timeout=5)

    with connect() as s:  # not AMQP at all
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 8)
        s.settimeout(2)
        with contextlib.suppress(OSError):
            s.recv(1024)
    with connect() as s:  # a valid SASL header, then the socket drops in the middle of a frame
        s.sendall(b"AMQP\x03\x01\x00\x00")
        s.recv(8)
        s.sendall(b"\x00\x00\x00\x40\x02\x01\x00\x00\x00\x53\x41")
    with connect() as s:  # an AMQP header followed by a frame that claims to be huge
        s.sendall(b"AMQP\x00\x01\x00\x00" + b"\xff\xff\xff\xff\x02\x00\x00\x00" + b"\x00" * 100)
    for _ in range(20):  # connect and hang up at once
        connect().close()
    still_serves(sb)


def test_too_many_links_is_a_clean_error(servicebus_factory: ServiceBusFactory, tmp_path: Path) -> None:
    config = write_config(tmp_path / "entities.json", [queue("plain")])
    sb = servicebus_factory(config, extra_args=("--max-links", "2"))
    with client(sb, retry_total=0) as c:
        first, second = c.get_queue_sender("plain"), c.get_queue_sender("plain")
        with first, second:
            first.send_messages(ServiceBusMessage("one"))
            second.send_messages(ServiceBusMessage("two"))
            with pytest.raises(ServiceBusQuotaExceededError), c.get_queue_sender("plain") as third:
                third.send_messages(ServiceBusMessage("three"))
        with c.get_queue_sender("plain") as again:  # links were given back on close
            again.send_messages(ServiceBusMessage("four"))
        assert bodies(take(c, "plain")) == ["one", "two", "four"]


def test_readiness_line_and_clean_exit_on_sigterm_and_sigint(
    servicebus_factory: ServiceBusFactory, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "entities.json", [queue("a"), queue("b")])
    sb = servicebus_factory(config)
    log = sb.data_dir.with_name(sb.data_dir.name + ".log").read_text()
    ready = [line for line in log.splitlines() if "ready" in line]
    assert ready == [f"servicebus emulator ready on amqp://127.0.0.1:{sb.port} (2 entities)"]
    assert sb.stop() == 0
    sb.start()
    proc = sb._proc
    assert proc is not None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0


def test_bad_config_fails_fast_with_the_field_named(servicebus_factory: ServiceBusFactory, tmp_path: Path) -> None:
    config = write_config(tmp_path / "entities.json", [queue("a", LockDuration="forever")])
    done = subprocess.run(
        [sys.executable, "-m", "devstack.servicebus", "--config", str(config), "--port", "1", "--data", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "LockDuration" in done.stderr
