"""A lean event loop around proton's AMQP engine (Transport, Connection, Collector) and `selectors`.

proton's Python `Container` reactor dispatches every engine event through several layers of generic
handlers, selectable bookkeeping and I/O callbacks; for a broker that answers each settlement with one
small frame that bookkeeping was most of the CPU per message. This loop keeps proton for everything
AMQP (framing, SASL, sessions, links, flow control) and does the socket work itself: read what is there,
hand the engine's events straight to the handler's `on_<event>` methods, let the handler commit
(`quiesce`), and write what the engine produced, once per pass.

The port also serves the HTTPS management API: the first byte of a new connection tells the protocols
apart (`A` of the AMQP header; anything else, a TLS ClientHello above all, goes to `on_other`, which
serves it on its own thread). Those threads run broker work on this loop through `call`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from proton import Collector, Connection, EventType, Transport

from devstack.servicebus.framing import InboundFrames

logger = logging.getLogger(__name__)

READ_SIZE = 256 * 1024


class EngineHandler(Protocol):
    def tick(self) -> None:
        """Called about every `tick_interval` seconds (timers)."""

    def quiesce(self) -> None:
        """Called when no engine events are left; may create more (they are dispatched before writing)."""


class _Peer:
    __slots__ = ("connection", "frames", "inbound", "sock", "transport", "writing")

    def __init__(self, sock: socket.socket, transport: Transport, connection: Connection) -> None:
        self.sock = sock
        self.transport = transport
        self.connection = connection
        self.writing = False
        self.frames = InboundFrames()
        self.inbound = bytearray()  # ordered bytes proton had no room for yet


class _Unsniffed:
    """A new connection whose first byte has not arrived yet."""

    __slots__ = ("since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.since = time.monotonic()


SNIFF_TIMEOUT_S = 30.0
T = TypeVar("T")


class IoLoop:
    def __init__(
        self,
        handler: EngineHandler,
        host: str,
        port: int,
        tick_interval: float = 0.05,
        on_other: Callable[[socket.socket], None] | None = None,
    ) -> None:
        self.handler = handler
        self.on_other = on_other
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._unsniffed: dict[int, _Unsniffed] = {}
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
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        self._listener = listener

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the loop's thread and return its result (for other threads; raises what it raised)."""
        future: Future[T] = Future()
        self._calls.put((fn, future))
        with contextlib.suppress(BlockingIOError):  # already woken: the byte waiting there is enough
            self._wake_w.send(b"x")
        return future.result(timeout)

    def _run_calls(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001  (handed to the calling thread, which re-raises it)
                future.set_exception(exc)

    def stop(self) -> None:
        """Ask the loop to end after the current pass (safe to call from a signal handler)."""
        self._stopping = True

    def run(self) -> None:
        next_tick = time.monotonic() + self.tick_interval
        while not self._stopping:
            timeout = max(0.0, next_tick - time.monotonic())
            for key, mask in self.selector.select(timeout):
                peer = key.data
                if peer is None:
                    self._accept()
                    continue
                if peer is self._wake_r:
                    self._run_calls()
                    continue
                if isinstance(peer, _Unsniffed):
                    self._sniff(peer)
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
                for pending in list(self._unsniffed.values()):
                    if now - pending.since > SNIFF_TIMEOUT_S:
                        self._forget(pending)
                        pending.sock.close()
                self._dispatch()
            for _ in range(10):  # committing may settle deliveries, which may let more work through
                self._guard(self.handler.quiesce)
                if not self._dispatch():
                    break
            for peer in list(self.peers.values()):
                if peer.inbound:
                    self._push(peer, b"")
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
        pending = _Unsniffed(sock)
        self._unsniffed[sock.fileno()] = pending
        self.selector.register(sock, selectors.EVENT_READ, pending)

    def _forget(self, pending: _Unsniffed) -> None:
        self._unsniffed.pop(pending.sock.fileno(), None)
        self.selector.unregister(pending.sock)

    def _sniff(self, pending: _Unsniffed) -> None:
        sock = pending.sock
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            first = b""
        self._forget(pending)
        if not first:
            sock.close()
            return
        if first == b"A" or self.on_other is None:
            self._amqp_peer(sock)
            return
        sock.setblocking(True)
        try:
            self.on_other(sock)
        except Exception:
            logger.exception("could not hand over a non-AMQP connection")
            sock.close()

    def _amqp_peer(self, sock: socket.socket) -> None:
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
        if data:
            self._push(peer, peer.frames.feed(data))
            return
        try:
            transport.close_tail()
        except Exception:  # proton reports a closed transport as an event
            logger.debug("transport rejected end of input", exc_info=True)

    def _push(self, peer: _Peer, data: bytes) -> None:
        """Hand ordered bytes to proton, keeping what it has no room for yet."""
        if data:
            peer.inbound += data
        transport = peer.transport
        try:
            capacity = transport.capacity()
            if capacity <= 0 or not peer.inbound:
                return
            chunk = bytes(peer.inbound[:capacity])
            del peer.inbound[: len(chunk)]
            transport.push(chunk)
        except Exception:  # a protocol error closes the transport; proton reports it as an event
            logger.debug("transport rejected input", exc_info=True)
            peer.inbound.clear()
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
        for pending in list(self._unsniffed.values()):
            self._forget(pending)
            pending.sock.close()
        self.selector.unregister(self._wake_r)
        self._wake_r.close()
        self._wake_w.close()
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
