"""The AMQP 1.0 side of the emulator: the handler for python-qpid-proton engine events (driven by `IoLoop`).

It turns connections, links and deliveries into broker calls: `$cbs` put-token (SAS check), sender
links to queues/topics, receiver links on queues, subscriptions and their dead-letter queues (plain or
session), settlement dispositions, and `$management` requests (see `management.py`). Every event
handler is guarded: an exception is logged and answered on the link, it never stops the loop.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from proton import Condition, Data, Delivery, Endpoint, Link, Message, ProtonException, Terminus, symbol

from devstack.servicebus import auth, codec
from devstack.servicebus.broker import Broker, BrokerError, Session, SubQueue, Target, now_ms
from devstack.servicebus.management import Management
from devstack.servicebus.opcounts import OperationCounts
from devstack.servicebus.settings import ServerSettings

logger = logging.getLogger(__name__)

SESSION_FILTER = symbol("com.microsoft:session-filter")
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
ATTACH_TIMEOUT = symbol("com.microsoft:timeout")
BATCH_SIZE_PROPERTY = symbol("com.microsoft:max-message-batch-size")
TRACKING_ID = symbol("com.microsoft:tracking-id")
DOTNET_EPOCH_TICKS = 621355968000000000
SEND_CREDIT = 1000
REQUEST_CREDIT = 100
DEFAULT_SESSION_WAIT_MS = 60_000
MAX_LINKS_PER_CONNECTION = 512

F = TypeVar("F", bound=Callable[..., None])


def guarded(method: F) -> F:
    """Log instead of raising: an exception escaping a handler would end `Container.run()`."""

    @functools.wraps(method)
    def wrapper(self: Any, event: Any) -> None:
        try:
            method(self, event)
        except Exception:
            logger.exception("error handling %s", getattr(event, "type", event))

    return wrapper  # type: ignore[return-value]


def dotnet_ticks(ms: int) -> int:
    return ms * 10_000 + DOTNET_EPOCH_TICKS


class ConnectionState:
    """What the emulator remembers about one client connection."""

    def __init__(self) -> None:
        self.grants: dict[str, float] = {}
        self.reply_links: dict[str, Link] = {}
        self.consumers: list[EntityConsumer] = []
        self.links = 0

    def authorized(self, path: str) -> bool:
        now = now_ms() / 1000
        for granted, expires in self.grants.items():
            if expires > now and (not granted or path == granted or path.startswith(granted + "/")):
                return True
        return False


class EntityConsumer:
    """A client receiver link on a queue, subscription or dead-letter queue (the broker's `Consumer`)."""

    def __init__(self, link: Link, sq: SubQueue, receive_and_delete: bool, operations: OperationCounts) -> None:
        self.link = link
        self.operations = operations
        self.sq = sq
        self.receive_and_delete = receive_and_delete
        self.session: Session | None = None
        self.closed = False
        self.released = False

    @property
    def credit(self) -> int:
        return 0 if self.closed else int(self.link.credit)

    def send(self, tag: bytes, payload: bytes, settled: bool) -> None:
        delivery = self.link.delivery(tag)  # type: ignore[arg-type]  # binary tags pass through unchanged
        delivery.sb_token = tag  # Delivery.tag would try to decode the binary tag as UTF-8
        self.link.stream(payload)
        self.link.advance()
        self.operations.add("messages out")
        if settled:
            delivery.settle()

    def session_lost(self, sid: str) -> None:
        self.closed = True
        self.link.condition = Condition("com.microsoft:session-lock-lost", f"The session lock for '{sid}' expired.")
        self.link.close()

    def entity_gone(self, description: str) -> None:
        self.closed = True
        self.link.condition = _condition("amqp:not-found", description)
        self.link.close()


class AmqpServer:
    """Engine event handler (`on_<event>` methods, called by `IoLoop`) plus the loop's tick/quiesce hooks."""

    def __init__(self, broker: Broker, settings: ServerSettings) -> None:
        self.broker = broker
        self.settings = settings
        self.management = Management(broker, self._reply)
        self.open_links = 0
        self.operations = OperationCounts(settings.data_dir)

    def tick(self) -> None:
        self.broker.tick()
        self.operations.maybe_write()

    def quiesce(self) -> None:
        # Everything read in this pass is in memory: commit it in one transaction, then acknowledge.
        self.broker.store.flush()

    # ------------------------------------------------------------ connections

    @guarded
    def on_connection_bound(self, event: Any) -> None:
        event.transport.sasl().allowed_mechs("ANONYMOUS")
        event.connection.sb_state = ConnectionState()

    @guarded
    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        if not hasattr(connection, "sb_state"):
            connection.sb_state = ConnectionState()
        if connection.state & Endpoint.LOCAL_UNINIT:
            self.operations.add("connections opened")
            connection.open()

    @guarded
    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @guarded
    def on_connection_remote_close(self, event: Any) -> None:
        self._drop_connection(event.connection)
        event.connection.close()

    @guarded
    def on_transport_closed(self, event: Any) -> None:
        if event.connection is not None:
            self._drop_connection(event.connection)

    @guarded
    def on_transport_error(self, event: Any) -> None:
        condition = event.transport.condition
        logger.info("connection error: %s", condition.description if condition else "unknown")
        if event.connection is not None:
            self._drop_connection(event.connection)

    def _drop_connection(self, connection: Any) -> None:
        state: ConnectionState | None = getattr(connection, "sb_state", None)
        if state is None:
            return
        for consumer in state.consumers:
            self._release(consumer)
        state.consumers = []
        self.open_links -= state.links
        state.links = 0
        state.reply_links.clear()

    def _release(self, consumer: EntityConsumer) -> None:
        if consumer.released:
            return
        consumer.released = consumer.closed = True
        self.broker.release_consumer(consumer.sq, consumer)

    # ------------------------------------------------------------ links

    @guarded
    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        self.operations.add("links attached")
        state: ConnectionState = link.connection.sb_state
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        address = (link.remote_target if link.is_receiver else link.remote_source).address or ""
        if address == "$cbs":
            link.sb_kind = "cbs"
            if link.is_sender:
                state.reply_links[address] = link
            self._open(link, state, counted=False)
            return
        if link.is_sender and address.endswith("/$management"):
            state.reply_links[address] = link
            link.sb_kind = "reply"
            self._open(link, state, counted=False)
            return
        path = auth.entity_path(address)
        if state.links >= MAX_LINKS_PER_CONNECTION or self.open_links >= self.settings.max_links:
            self._refuse(link, "amqp:resource-limit-exceeded", "Too many links are open on the emulator.")
            return
        entity = path.removesuffix("/$management")
        if not state.authorized(entity):
            self._refuse(
                link, "amqp:unauthorized-access", f"Unauthorized access to '{entity}': put a valid token first."
            )
            return
        try:
            if path.endswith("/$management"):
                link.sb_kind = "mgmt"
                link.sb_entity = entity
                self.management.resolve(entity)  # raise not-found early
                self._open(link, state)
            elif link.is_receiver:
                self._attach_sender(link, state, path)
            else:
                self._attach_consumer(link, state, path)
        except BrokerError as err:
            self._refuse(link, err.condition, err.description)

    def _open(self, link: Link, state: ConnectionState, *, counted: bool = True) -> None:
        link.sb_counted = counted
        if counted:
            state.links += 1
            self.open_links += 1
        link.open()
        if link.is_receiver:
            link.flow(SEND_CREDIT if getattr(link, "sb_kind", "") == "send" else REQUEST_CREDIT)

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        logger.info(
            "refusing link to %s: %s",
            (link.remote_target if link.is_receiver else link.remote_source).address,
            description,
        )
        link.sb_kind = "refused"
        # The AMQP way to refuse: attach with a null terminus on our side, then detach with the error.
        (link.target if link.is_receiver else link.source).type = Terminus.UNSPECIFIED
        link.open()
        link.condition = Condition(condition, description)
        link.close()

    def _attach_sender(self, link: Link, state: ConnectionState, path: str) -> None:
        target = self.broker.target(path)
        link.sb_kind = "send"
        link.sb_target = target
        link.max_message_size = self.settings.max_message_size
        link.properties = {BATCH_SIZE_PROPERTY: self.settings.max_message_size}
        self._open(link, state)

    def _attach_consumer(self, link: Link, state: ConnectionState, path: str) -> None:
        sq = self.broker.subqueues.get(path)
        if sq is None:
            raise BrokerError("amqp:not-found", f"The messaging entity '{path}' could not be found.", 404)
        if sq.main.status in ("Disabled", "ReceiveDisabled"):
            raise BrokerError("com.microsoft:entity-disabled", f"The messaging entity '{sq.name}' is disabled.", 400)
        consumer = EntityConsumer(
            link, sq, receive_and_delete=link.remote_snd_settle_mode == Link.SND_SETTLED, operations=self.operations
        )
        link.sb_kind = "consume"
        link.sb_consumer = consumer
        session_filter = _session_filter(link)
        if not sq.sessions_enabled:
            if session_filter is not _NO_FILTER:
                raise BrokerError("amqp:not-allowed", f"'{sq.name}' does not require sessions.", 400)
            state.consumers.append(consumer)
            sq.consumers.append(consumer)
            self._open(link, state)
            return
        if session_filter is _NO_FILTER:
            raise BrokerError("amqp:not-allowed", f"'{sq.name}' requires a session receiver.", 400)
        sid = self.broker.acquire_session(sq, consumer, session_filter)
        state.consumers.append(consumer)
        if sid is not None:
            self._open_session_link(consumer, state, sid)
            return
        wait_ms = _attach_timeout(link)
        self.broker.wait_for_session(
            sq, consumer, now_ms() + wait_ms, lambda found: self._session_found(consumer, state, found)
        )

    def _session_found(self, consumer: EntityConsumer, state: ConnectionState, sid: str | None) -> None:
        link = consumer.link
        if sid is None:
            consumer.closed = True
            link.source.type = Terminus.UNSPECIFIED
            link.open()
            link.condition = Condition("com.microsoft:timeout", "No unlocked session with messages is available.")
            link.close()
            return
        self._open_session_link(consumer, state, sid)

    def _open_session_link(self, consumer: EntityConsumer, state: ConnectionState, sid: str) -> None:
        link, sq = consumer.link, consumer.sq
        session = sq.sessions[sid]
        consumer.session = session
        link.source.filter.clear()
        link.source.filter.put_dict({SESSION_FILTER: sid})
        link.properties = {LOCKED_UNTIL_UTC: dotnet_ticks(session.locked_until)}
        self._open(link, state)

    @guarded
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        consumer: EntityConsumer | None = getattr(link, "sb_consumer", None)
        if consumer is None or consumer.closed:
            return
        if consumer.session is not None:
            self.broker.pump_consumer(consumer.sq, consumer, consumer.session)
        elif not consumer.sq.sessions_enabled:
            self.broker.pump_consumer(consumer.sq, consumer, None)
        if link.drain_mode and link.credit > 0:
            link.drained()

    @guarded
    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        self._link_gone(link)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    @guarded
    def on_link_remote_detach(self, event: Any) -> None:
        self._link_gone(event.link)
        if not event.link.state & Endpoint.LOCAL_CLOSED:
            event.link.close()

    def _link_gone(self, link: Link) -> None:
        if getattr(link, "sb_gone", False):
            return
        link.sb_gone = True
        state: ConnectionState | None = getattr(link.connection, "sb_state", None)
        if getattr(link, "sb_counted", False) and state is not None and state.links > 0:
            state.links -= 1
            self.open_links -= 1
        consumer: EntityConsumer | None = getattr(link, "sb_consumer", None)
        if consumer is not None:
            self._release(consumer)
            if state is not None and consumer in state.consumers:
                state.consumers.remove(consumer)

    # ------------------------------------------------------------ deliveries

    @guarded
    def on_delivery(self, event: Any) -> None:
        link, delivery = event.link, event.delivery
        if link.is_sender:
            if delivery.updated:
                self._settlement(link, delivery)
            return
        self._incoming(link, delivery)

    def _incoming(self, link: Link, delivery: Delivery) -> None:
        kind = getattr(link, "sb_kind", "")
        limit = self.settings.max_message_size + 64 * 1024  # room for the batch envelope
        buf: bytearray | None = getattr(delivery, "sb_buf", None)
        if buf is None:
            buf = bytearray()
            delivery.sb_buf = buf
        chunk = link.recv(delivery.pending) if delivery.pending else b""
        if chunk and not getattr(delivery, "sb_dropped", False):
            buf += chunk
        if delivery.aborted:
            delivery.settle()
            link.advance()
            return
        if len(buf) > limit and not getattr(delivery, "sb_dropped", False):
            delivery.sb_dropped = True
            buf.clear()
        if delivery.partial:
            return
        link.advance()
        self.operations.add(f"request {kind or 'other'}")
        if link.credit < (SEND_CREDIT if kind == "send" else REQUEST_CREDIT) // 2:
            link.flow((SEND_CREDIT if kind == "send" else REQUEST_CREDIT) - link.credit)
        if getattr(delivery, "sb_dropped", False):
            _reject(
                delivery,
                "amqp:link:message-size-exceeded",
                f"The message exceeds {self.settings.max_message_size} bytes.",
            )
            return
        data = bytes(buf)
        delivery.sb_buf = None
        if kind == "send":
            self._entity_send(link, delivery, data)
        elif kind == "cbs":
            self._put_token(link, delivery, data)
        elif kind == "mgmt":
            self._management_request(link, delivery, data)
        else:
            _reject(delivery, "amqp:not-allowed", "This link does not accept messages.")

    def _entity_send(self, link: Link, delivery: Delivery, data: bytes) -> None:
        target: Target = link.sb_target
        if self.broker.targets.get(target.path) is not target:
            _reject(delivery, "amqp:not-found", f"The messaging entity '{target.path}' was deleted.")
            return
        if target.status in ("Disabled", "SendDisabled"):
            _reject(delivery, "com.microsoft:entity-disabled", f"The messaging entity '{target.path}' is disabled.")
            return
        try:
            payloads = codec.split_batch(data) or [data]
            parsed = [codec.parse_message(p) for p in payloads]
        except (codec.CodecError, UnicodeDecodeError) as exc:
            _reject(delivery, "amqp:decode-error", f"The message could not be decoded: {exc}")
            return
        if any(len(p) > self.settings.max_message_size for p in payloads):
            _reject(
                delivery,
                "amqp:link:message-size-exceeded",
                f"The message exceeds {self.settings.max_message_size} bytes.",
            )
            return

        def acknowledge(_seqs: list[int]) -> None:
            _settle(delivery, Delivery.ACCEPTED)

        self.operations.add("messages in", len(parsed))
        self.broker.send(target, parsed, acknowledge)

    def _put_token(self, link: Link, delivery: Delivery, data: bytes) -> None:
        request = _decode_request(delivery, data)
        if request is None:
            return
        props: dict[Any, Any] = dict(request.properties or {})
        state: ConnectionState = link.connection.sb_state
        status, description = 200, "OK"
        token = request.body
        if isinstance(token, bytes | memoryview):
            token = bytes(token).decode("utf-8", "replace")
        try:
            if props.get("operation") != "put-token":
                raise auth.AuthError(f"unsupported CBS operation {props.get('operation')!r}")
            grant = auth.verify(str(token), self.settings.key_name, self.settings.key)
            state.grants[grant.path] = grant.expires
        except auth.AuthError as exc:
            logger.info("CBS token refused: %s", exc)
            status, description = 401, f"Unauthorized: {exc}"
        _settle(delivery, Delivery.ACCEPTED)
        reply = Message(
            correlation_id=request.id, properties={"status-code": status, "status-description": description}
        )
        self._reply(link.connection, "$cbs", reply)

    def _management_request(self, link: Link, delivery: Delivery, data: bytes) -> None:
        request = _decode_request(delivery, data)
        if request is None:
            return
        _settle(delivery, Delivery.ACCEPTED)
        properties: dict[Any, Any] = dict(request.properties or {})
        self.operations.add(f"management {properties.get('operation', '?')}")
        self.management.handle(link.connection, link.sb_entity, request)

    def _reply(self, connection: Any, address: str, message: Message) -> None:
        state: ConnectionState | None = getattr(connection, "sb_state", None)
        link = state.reply_links.get(address) if state is not None else None
        if link is None or link.state & Endpoint.LOCAL_CLOSED:
            logger.info("no reply link for %s; response dropped", address)
            return
        delivery = link.delivery(str(uuid.uuid4()))
        link.stream(message.encode())
        link.advance()
        delivery.settle()

    def _settlement(self, link: Link, delivery: Delivery) -> None:
        consumer: EntityConsumer | None = getattr(link, "sb_consumer", None)
        token: bytes | None = getattr(delivery, "sb_token", None)
        if consumer is None or token is None or (delivery.settled and delivery.remote_state == 0):
            delivery.settle()
            return
        sq, outcome = consumer.sq, delivery.remote_state
        self.operations.add(f"settle {_OUTCOMES.get(outcome, str(outcome))}")
        try:
            if outcome == Delivery.ACCEPTED:
                self.broker.complete(sq, token)
            elif outcome == Delivery.RELEASED:
                self.broker.abandon(sq, token, count=False)
            elif outcome == Delivery.MODIFIED:
                annotations = _plain(delivery.remote.annotations)
                if delivery.remote.undeliverable:
                    self.broker.defer(sq, token, annotations)
                else:
                    self.broker.abandon(sq, token, count=bool(delivery.remote.failed), properties=annotations)
            elif outcome == Delivery.REJECTED:
                condition = delivery.remote.condition
                info = _plain(condition.info) if condition is not None and condition.info else {}
                self.broker.dead_letter_locked(
                    sq, token, info.get("DeadLetterReason"), info.get("DeadLetterErrorDescription")
                )
            else:
                delivery.settle()
                return
        except BrokerError as err:
            if delivery.settled:
                delivery.settle()
                return
            delivery.local.condition = _condition(err.condition, err.description)
            self.broker.store.after_commit(lambda: _settle(delivery, Delivery.REJECTED))
            return
        if delivery.settled:
            delivery.settle()
            return
        failed, undeliverable = bool(delivery.remote.failed), bool(delivery.remote.undeliverable)

        def answer() -> None:
            if outcome == Delivery.MODIFIED:
                delivery.local.failed = failed
                delivery.local.undeliverable = undeliverable
            _settle(delivery, outcome)

        self.broker.store.after_commit(answer)


_NO_FILTER = object()
_OUTCOMES: dict[Any, str] = {
    Delivery.ACCEPTED: "complete",
    Delivery.RELEASED: "abandon",
    Delivery.MODIFIED: "abandon or defer",
    Delivery.REJECTED: "dead-letter",
}


def _session_filter(link: Link) -> Any:
    """The requested session id, None for "next available", or _NO_FILTER when not a session receiver."""
    data: Data = link.remote_source.filter
    data.rewind()
    if not data.next():
        return _NO_FILTER
    value = data.get_object()
    if not isinstance(value, dict):
        return _NO_FILTER
    for key, sid in value.items():
        if str(key) == str(SESSION_FILTER):
            sid = getattr(sid, "value", sid)  # a described value
            if isinstance(sid, bytes | memoryview):
                sid = bytes(sid).decode()
            return None if sid is None else str(sid)
    return _NO_FILTER


def _attach_timeout(link: Link) -> int:
    props = link.remote_properties or {}
    for key, value in props.items():
        if str(key) == str(ATTACH_TIMEOUT) and isinstance(value, int):
            return max(int(value), 0)
    return DEFAULT_SESSION_WAIT_MS


def _plain(value: Any) -> dict[str, Any]:
    """A proton map (symbol keys, memoryview values) as a plain dict."""
    if not isinstance(value, dict):
        return {}
    result: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, memoryview):
            item = bytes(item)
        result[str(key)] = item
    return result


def _settle(delivery: Delivery, outcome: int) -> None:
    try:
        delivery.update(outcome)
        delivery.settle()
    except Exception:
        logger.debug("could not settle a delivery (connection gone?)", exc_info=True)


def _decode_request(delivery: Delivery, data: bytes) -> Message | None:
    """A `$cbs`/`$management` request, or None (and the transfer rejected) when it does not decode."""
    request = Message()
    try:
        request.decode(data)
    except ProtonException as exc:
        _reject(delivery, "amqp:decode-error", f"The request could not be decoded: {exc}")
        return None
    return request


def _condition(name: str, description: str) -> Condition:
    # The SDK indexes the error's third field (info) unconditionally on a rejected transfer, and proton
    # leaves out trailing nulls, so the info map is never empty.
    return Condition(name, description, {TRACKING_ID: "servicebus-emulator"})


def _reject(delivery: Delivery, condition: str, description: str) -> None:
    logger.info("rejecting a transfer: %s", description)
    delivery.local.condition = _condition(condition, description)
    _settle(delivery, Delivery.REJECTED)
