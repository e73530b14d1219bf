"""Accepting the next Service Bus session without the SDK's polling pauses, on one connection per thread.

azure-servicebus 7.15 opens a receiver by reading one AMQP frame, sleeping 50 ms, and reading the next
(``ServiceBusReceiver._open``). A session receiver's handshake is about nine frames (open, begin, two ``$cbs``
attaches and their credit, the token's answer and its disposition, the session link's attach), so each accept
took about 450 ms of its thread's time although the broker answers each frame within a millisecond; the frames
are all there to be read. :meth:`SessionAcceptor.accept` runs the same steps (the SDK's own handler, token, link
and error mapping) and reads each frame as soon as it comes, blocking on the socket instead of sleeping: an
accept takes a few milliseconds.

The receivers one thread accepts one after the other also share one AMQP connection: each still begins its own
AMQP session and puts its own ``$cbs`` token for its entity on it, as the .NET client the Functions runtime uses
does on its shared connection, so nothing about authorisation changes; only the TCP connection, SASL and the
connection's open and close are saved. The SDK's own switch for this (``ServiceBusClient._connection_sharing``)
fails in 7.15 before it connects and would open links without a token. The connection is never used by two
threads' receivers (one acceptor per thread); the host's lock renewer renews the held session on it, as it did
on the receiver's own connection. When anything fails on it other than "no session available", the connection
is dropped and the next accept opens a new one; an accept that finds its kept connection closed retries at once
on a new one.

This reaches into the SDK's private handler (the version is pinned in the dev extras); the integration tests
of the session trigger run it against the emulator with the real SDK.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from azure.servicebus import ServiceBusReceiver
from azure.servicebus._common.utils import create_authentication
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
)

logger = logging.getLogger(__name__)


class SessionAcceptor:
    """One thread's session accepts (not thread-safe: each session thread owns one)."""

    def __init__(self) -> None:
        self._connection: Any = None  # the pyamqp Connection the next receiver opens on, once one exists
        self._unanswered = False

    def accept(self, new_receiver: Callable[[], ServiceBusReceiver], timeout: float) -> ServiceBusReceiver:
        """A receiver from ``new_receiver()`` (a NEXT_AVAILABLE or named session receiver), opened as entering it
        would open it; entering it afterwards opens nothing more.

        Raises what entering it raises: OperationTimeoutError when no session came within the receiver's
        ``max_wait_time`` (the broker answers the attach then) or nothing at all within ``timeout`` seconds, a
        ServiceBusError for anything else (after which the connection is not reused). A connection kept from an
        earlier accept that turns out to be closed (a broker restart, or one that closes connections left without
        links) is replaced once, with a new receiver, without raising.
        """
        reused = self._connection is not None
        receiver = new_receiver()
        try:
            self._open(receiver, timeout)
            return receiver
        except (ServiceBusConnectionError, ServiceBusCommunicationError) as exc:
            if not reused:
                raise
            logger.info("a kept session connection failed (%s); accepting on a new one", exc)
        receiver = new_receiver()  # the failed one may count its session lock as lost
        self._open(receiver, timeout)
        return receiver

    def _open(self, receiver: ServiceBusReceiver, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._unanswered = False
        try:
            # The SDK's retry loop maps pyamqp errors to ServiceBusError as for its own open (no retries here:
            # the host's session clients are built with retry_total=0).
            receiver._do_retryable_operation(lambda **_: self._open_once(receiver, deadline))
        except OperationTimeoutError:
            if self._unanswered:
                self.drop()
            raise  # otherwise the broker answered the attach (no session came): the connection is fine
        except Exception:
            self.drop()
            raise

    def _open_once(self, receiver: ServiceBusReceiver, deadline: float) -> None:
        receiver._create_handler(create_authentication(receiver))
        handler = receiver._handler
        try:
            handler.open(connection=self._connection)
            # client_ready() reads the next frame (blocking up to the socket timeout) whenever the handshake is
            # not done.
            while not handler.client_ready():
                if time.monotonic() >= deadline:
                    self._unanswered = True  # no answer at all: do not trust the connection
                    raise OperationTimeoutError(message="Timed out waiting for the session receiver to open.")
        except BaseException:
            receiver._close_handler()
            raise
        receiver._running = True
        if self._connection is None:
            # Adopt the connection the handler just opened: closing this receiver leaves it open for the next.
            self._connection = handler._connection
            handler._external_connection = True

    def drop(self) -> None:
        """Closes the shared connection (after an error, or when the thread stops)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.close()
        except Exception as exc:  # noqa: BLE001 - a connection that already failed may fail again on close
            logger.debug("closing a session connection: %s", exc)

    def __enter__(self) -> SessionAcceptor:
        return self

    def __exit__(self, *_: object) -> None:
        self.drop()
