"""Accepting the next Service Bus session without the SDK's polling pauses, on one connection per thread.

azure-servicebus 7.15 opens a receiver by reading one AMQP frame, sleeping 50 ms, and reading the next
(``ServiceBusReceiver._open``). A session receiver's handshake is about nine frames (open, begin, two ``$cbs``
attaches and their credit, the token's answer and its disposition, the session link's attach), so each accept
took about 450 ms of its thread's time although the broker answers each frame within a millisecond; the frames
are all there to be read. :meth:`SessionAcceptor.accept` runs the same steps (the SDK's own handler, token, link
and error mapping) and reads each frame as soon as it comes, blocking on the socket instead of sleeping: an
accept takes a few milliseconds.

The receivers one thread accepts one after the other also share one AMQP connection, as the .NET client the
Functions runtime uses shares its connection, and, as that client does, they share the connection's one ``$cbs``
link pair: each receiver begins its own AMQP session and attaches only its session link. Service Bus keeps the
tokens put on a connection per entity until they expire ("the tokens are scoped to the current client and
anchored on the current connection", AMQP protocol guide, claims-based authorization), so a token is put when the
connection opens and again only when it is due: when the SDK's refresh point (a tenth of its lifetime before
expiry) has passed or it expired while no receiver was open. The .NET client puts a token with every link it
opens although the connection holds one for that entity already; leaving that out saves a request and its answer
per accept, and the two ``$cbs`` attaches and detaches per accept the SDK would make (accepts cost the broker and
this host about half as much CPU). The SDK's own switch for sharing a connection
(``ServiceBusClient._connection_sharing``) fails in 7.15 before it connects and would open links without a token.
The connection is never used by two threads' receivers (one acceptor per thread); the host's lock renewer renews
the held session on it, as it did on the receiver's own connection. When anything fails on it other than "no
session available", the connection is dropped and the next accept opens a new one, with new ``$cbs`` links and a
new token; an accept that finds its kept connection closed retries at once on a new one.

This reaches into the SDK's private handler and CBS authenticator (the version is pinned in the dev extras); the
integration tests of the session trigger run it against the emulator with the real SDK.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from azure.servicebus import ServiceBusReceiver
from azure.servicebus._common.utils import create_authentication
from azure.servicebus._pyamqp.constants import CbsAuthState
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
        self._authorization: _KeptAuthorization | None = None  # its $cbs links and token
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
            self._open_handler(handler)
            # client_ready() reads the next frame (blocking up to the socket timeout) whenever the handshake is
            # not done: the token (when one is due), then the session link's attach.
            while not handler.client_ready():
                if time.monotonic() >= deadline:
                    self._unanswered = True  # no answer at all: do not trust the connection
                    raise OperationTimeoutError(message="Timed out waiting for the session receiver to open.")
        except BaseException:
            receiver._close_handler()
            raise
        receiver._running = True

    def _open_handler(self, handler: Any) -> None:
        """What ``handler.open()`` does, on the kept connection and authorization when there are any."""
        if self._authorization is not None and handler._auth.audience != self._authorization.audience:
            self.drop()  # a receiver of another entity: its own connection and token (one acceptor serves one)
        if self._connection is None or self._authorization is None:
            # The SDK opens the connection (SASL, open), a session and the $cbs links; the session with the $cbs
            # links is kept for the connection's tokens, and the receiver gets a session of its own below.
            handler.open()
            self._connection = handler._connection
            handler._external_connection = True  # closing the receiver leaves the connection open
            self._authorization = _KeptAuthorization(handler._session, handler._cbs_authenticator)
        else:
            handler._connection = self._connection
            handler._external_connection = True
        handler._session = self._connection.create_session(
            incoming_window=handler._incoming_window, outgoing_window=handler._outgoing_window
        )
        handler._session.begin()
        handler._cbs_authenticator = self._authorization.lend()
        handler._network_trace_params["amqpConnection"] = self._connection._container_id
        handler._network_trace_params["amqpSession"] = handler._session.name
        handler._shutdown = False

    def drop(self) -> None:
        """Closes the shared connection (after an error, or when the thread stops)."""
        connection, self._connection = self._connection, None
        self._authorization = None  # its links go with the connection
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


class _KeptAuthorization:
    """A kept connection's ``$cbs`` link pair (on a session of its own) and the token last put on it."""

    def __init__(self, session: Any, authenticator: Any) -> None:
        self._session = session  # ends with the connection
        self._authenticator = authenticator
        self.audience: str = authenticator._auth.audience

    def lend(self) -> _LentAuthenticator:
        """The authenticator for a receiver about to open: the token is put again only when it is due."""
        authenticator = self._authenticator
        expires_on = authenticator._expires_on
        due = expires_on is not None and expires_on - time.time() <= (authenticator._refresh_window or 0)
        if due and authenticator.auth_state in (CbsAuthState.OK, CbsAuthState.REFRESH_REQUIRED):
            # The SDK refreshes a token in its refresh window but gives up on one that has expired (a connection
            # left without receivers for an hour): either way a new one is put before the link attaches.
            authenticator.auth_state = CbsAuthState.IDLE
        return _LentAuthenticator(authenticator)


class _LentAuthenticator:
    """What a receiver's handler sees as its ``CBSAuthenticator``: closing the handler leaves the links open."""

    def __init__(self, authenticator: Any) -> None:
        self._authenticator = authenticator

    def handle_token(self) -> bool:
        return bool(self._authenticator.handle_token())

    def close(self) -> None:
        pass
