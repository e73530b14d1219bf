"""A lean event loop around proton's AMQP engine (Transport, Connection, Collector) and `selectors`.

proton's Python `Container` reactor dispatches every engine event through several layers of generic
handlers, selectable bookkeeping and I/O callbacks; for a broker that answers each settlement with one
small frame that bookkeeping was most of the CPU per message. This loop keeps proton for everything
AMQP (framing, SASL, sessions, links, flow control) and does the socket work itself: read what is there,
hand the engine's events straight to the handler's `on_<event>` methods, let the handler commit
(`quiesce`), and write what the engine produced, once per pass.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from proton import Collector, Connection, EventType, Transport

logger = logging.getLogger(__name__)

READ_SIZE = 256 * 1024


class EngineHandler(Protocol):
    def tick(self) -> None:
        """Called about every `tick_interval` seconds (timers)."""

    def quiesce(self) -> None:
        """Called when no engine events are left; may create more (they are dispatched before writing)."""


class _Peer:
    __slots__ = ("connection", "sock", "transport", "writing")

    def __init__(self, sock: socket.socket, transport: Transport, connection: Connection) -> None:
        self.sock = sock
        self.transport = transport
        self.connection = connection
        self.writing = False


class IoLoop:
    def __init__(self, handler: EngineHandler, host: str, port: int, tick_interval: float = 0.05) -> None:
        self.handler = handler
        self.host, self.port = host, port
        self.tick_interval = tick_interval
        self.collector = Collector()
        self.selector = selectors.DefaultSelector()
        self.peers: dict[int, _Peer] = {}
        self._methods: dict[EventType, Callable[[Any], None] | None] = {}
        self._stopping = False
        self._listener: socket.socket | None = None

    def listen(self) -> None:
        """Bind and listen (raises OSError, e.g. when the port is taken)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ, None)
        self._listener = listener

    def stop(self) -> None:
        """Ask the loop to end after the current pass (safe to call from a signal handler)."""
        self._stopping = True

    def run(self) -> None:
        next_tick = time.monotonic() + self.tick_interval
        while not self._stopping:
            timeout = max(0.0, next_tick - time.monotonic())
            for key, mask in self.selector.select(timeout):
                peer: _Peer | None = key.data
                if peer is None:
                    self._accept()
                    continue
                if mask & selectors.EVENT_READ:
                    self._read(peer)
                if mask & selectors.EVENT_WRITE:
                    self._write(peer)
            self._dispatch()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.tick_interval
                self._guard(self.handler.tick)
                for peer in list(self.peers.values()):
                    peer.transport.tick(now)
                self._dispatch()
            for _ in range(10):  # committing may settle deliveries, which may let more work through
                self._guard(self.handler.quiesce)
                if not self._dispatch():
                    break
            for peer in list(self.peers.values()):
                self._write(peer)
        self._guard(self.handler.quiesce)
        self._shutdown()

    # ------------------------------------------------------------ sockets

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, address = self._listener.accept()
        except OSError:
            return
        logger.debug("connection from %s", address)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = Transport(Transport.SERVER)
        transport.sasl().allowed_mechs("ANONYMOUS")
        connection = Connection()
        connection.collect(self.collector)
        transport.bind(connection)
        peer = _Peer(sock, transport, connection)
        self.peers[sock.fileno()] = peer
        self.selector.register(sock, selectors.EVENT_READ, peer)

    def _read(self, peer: _Peer) -> None:
        transport = peer.transport
        capacity = transport.capacity()
        if capacity < 0:
            return
        try:
            data = peer.sock.recv(min(max(capacity, 1), READ_SIZE))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            if data:
                transport.push(data)
            else:
                transport.close_tail()
        except Exception:  # a protocol error closes the transport; proton reports it as an event
            logger.debug("transport rejected input", exc_info=True)
            transport.close_tail()

    def _write(self, peer: _Peer) -> None:
        transport = peer.transport
        pending = transport.pending()
        if pending > 0:
            try:
                sent = peer.sock.send(transport.peek(pending) or b"")
                transport.pop(sent)
            except BlockingIOError:
                pass
            except OSError:
                transport.close_head()
                transport.close_tail()
            pending = transport.pending()
        if pending < 0:
            # Nothing more will be written: the connection is over once the engine says so.
            if transport.capacity() >= 0:
                transport.close_tail()
            self._dispatch()
            self._close(peer)
            return
        want_write = pending > 0
        if want_write != peer.writing:
            peer.writing = want_write
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            self.selector.modify(peer.sock, events, peer)

    def _close(self, peer: _Peer) -> None:
        if self.peers.pop(peer.sock.fileno(), None) is None:
            return
        self.selector.unregister(peer.sock)
        peer.sock.close()
        peer.transport.unbind()

    def _shutdown(self) -> None:
        for peer in list(self.peers.values()):
            self._close(peer)
        if self._listener is not None:
            self.selector.unregister(self._listener)
            self._listener.close()
        self.selector.close()

    # ------------------------------------------------------------ events

    def _dispatch(self) -> bool:
        """Hand every queued engine event to the handler; True if there were any."""
        collector = self.collector
        any_events = False
        while True:
            event = collector.peek()
            if event is None:
                return any_events
            any_events = True
            etype = event.type
            method = self._methods.get(etype, ...)
            if method is ...:
                method = getattr(self.handler, etype.method, None)
                self._methods[etype] = method
            if method is not None:
                try:
                    method(event)
                except Exception:
                    logger.exception("error handling %s", etype)
            collector.pop()

    @staticmethod
    def _guard(call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            logger.exception("emulator housekeeping failed")
