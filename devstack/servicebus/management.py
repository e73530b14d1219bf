"""`$management` request/response operations the azure-servicebus SDK uses.

Requests carry `operation` (`com.microsoft:<op>`) in their application properties and an amqp-value map
body; responses carry `statusCode`/`statusDescription` (and `errorCondition` on failure) plus a map body.
Responses are sent after the store commits whatever the operation changed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from proton import UNDESCRIBED, Array, Data, Message, timestamp

from devstack.servicebus import codec
from devstack.servicebus.broker import Broker, BrokerError, SubQueue, Target, not_found

logger = logging.getLogger(__name__)

Reply = Callable[[Any, str, Message], None]
PREFIX = "com.microsoft:"
# "no cutoff": the SDK sends .NET's DateTime.MaxValue (year 10000) to list sessions with messages or state.
MAX_DATETIME_MS = 253402300800000
DISPOSITIONS = {"completed", "abandoned", "suspended", "defered", "deferred"}


class Management:
    def __init__(self, broker: Broker, reply: Reply) -> None:
        self.broker = broker
        self._reply = reply

    def resolve(self, path: str) -> tuple[Target | None, SubQueue | None]:
        target = self.broker.targets.get(path)
        sq = self.broker.subqueues.get(path)
        if target is None and sq is None:
            raise not_found(path)
        return target, sq

    def handle(self, connection: Any, entity: str, request: Message) -> None:
        raw: dict[Any, Any] = request.properties or {}
        props = {str(k): v for k, v in raw.items()}
        operation = str(props.get("operation", "")).removeprefix(PREFIX)
        body = request.body if isinstance(request.body, dict) else {}
        args = {str(k): _copy(v) for k, v in body.items()}
        reply_to = request.reply_to or f"{entity}/$management"

        def respond(status: int, description: str, value: Any = None, condition: str | None = None) -> None:
            app: dict[str, Any] = {"statusCode": status, "statusDescription": description}
            if condition:
                app["errorCondition"] = condition
            message = Message(correlation_id=request.id, properties=app, body=value)
            self.broker.store.after_commit(lambda: self._reply(connection, reply_to, message))

        try:
            target, sq = self.resolve(entity)
            handler = getattr(self, "op_" + operation.replace("-", "_"), None)
            if handler is None:
                respond(501, f"Operation {operation!r} is not supported by the emulator.", None, "amqp:not-implemented")
                return
            handler(target, sq, args, respond)
        except BrokerError as err:
            respond(err.status, err.description, None, err.condition)
        except (KeyError, TypeError, ValueError, codec.CodecError) as exc:
            logger.info("bad %s request: %r", operation, exc)
            respond(400, f"Bad request: {exc!r}", None, "com.microsoft:argument-error")

    # ------------------------------------------------------------ operations

    def op_renew_lock(self, target: Any, sq: SubQueue | None, args: dict[str, Any], respond: Any) -> None:
        sq = _need(sq)
        expirations = [timestamp(self.broker.renew(sq, _token(t))) for t in _items(args["lock-tokens"])]
        respond(200, "OK", {"expirations": _array(Data.TIMESTAMP, expirations)})

    def op_update_disposition(self, target: Any, sq: SubQueue | None, args: dict[str, Any], respond: Any) -> None:
        sq = _need(sq)
        status = str(args["disposition-status"]).lower()
        if status not in DISPOSITIONS:
            raise BrokerError("com.microsoft:argument-error", f"unknown disposition-status {status!r}")
        changes = {str(k): _copy(v) for k, v in (args.get("properties-to-modify") or {}).items()}
        for token in (_token(t) for t in _items(args["lock-tokens"])):
            if status == "completed":
                self.broker.complete(sq, token)
            elif status == "abandoned":
                self.broker.abandon(sq, token, properties=changes)
            elif status == "suspended":
                self.broker.dead_letter_locked(
                    sq, token, args.get("deadletter-reason"), args.get("deadletter-description"), changes
                )
            else:
                self.broker.defer(sq, token, changes)
        respond(200, "OK", {})

    def op_peek_message(self, target: Any, sq: SubQueue | None, args: dict[str, Any], respond: Any) -> None:
        sq = _need(sq)
        found = self.broker.peek(
            sq, int(args.get("from-sequence-number", 0)), int(args.get("message-count", 1)), args.get("session-id")
        )
        if not found:
            respond(204, "No messages")
            return
        respond(200, "OK", {"messages": [{"message": m.encode()} for m in found]})

    def op_receive_by_sequence_number(
        self, target: Any, sq: SubQueue | None, args: dict[str, Any], respond: Any
    ) -> None:
        sq = _need(sq)
        delete = int(args.get("receiver-settle-mode", 1)) == 0
        seqs = [int(s) for s in _items(args["sequence-numbers"])]
        found = self.broker.receive_deferred(sq, seqs, delete, args.get("session-id"), None)
        messages = []
        for m, token, until in found:
            item: dict[str, Any] = {"message": m.encode(until or None)}
            if not delete:
                item["lock-token"] = uuid.UUID(bytes_le=token)
            messages.append(item)
        respond(200, "OK", {"messages": messages})

    def op_schedule_message(self, target: Target | None, sq: Any, args: dict[str, Any], respond: Any) -> None:
        if target is None:
            raise BrokerError("amqp:not-allowed", "Messages can only be scheduled on a queue or topic.")
        parsed = [codec.parse_message(bytes(item["message"])) for item in _items(args["messages"])]

        def stored(seqs: list[int]) -> None:
            respond(200, "OK", {"sequence-numbers": _array(Data.LONG, seqs)})

        self.broker.schedule(target, parsed, stored)

    def op_cancel_scheduled_message(self, target: Target | None, sq: Any, args: dict[str, Any], respond: Any) -> None:
        if target is None:
            raise BrokerError("amqp:not-allowed", "Scheduled messages live on a queue or topic.")
        self.broker.cancel_scheduled(target, [int(s) for s in _items(args["sequence-numbers"])])
        respond(200, "OK", {})

    def op_renew_session_lock(self, target: Any, sq: SubQueue | None, args: dict[str, Any], respond: Any) -> None:
        until = self.broker.renew_session(_need(sq), str(args["session-id"]))
        respond(200, "OK", {"expiration": timestamp(until)})

    def op_get_message_sessions(self, target: Any, sq: SubQueue | None, args: dict[str, Any], respond: Any) -> None:
        sq = _need(sq)
        if not sq.sessions_enabled:
            raise BrokerError("amqp:not-allowed", f"'{sq.name}' does not require sessions.")
        cutoff = _ms(args.get("last-updated-time"))
        found = self.broker.list_sessions(sq, None if cutoff is None or cutoff >= MAX_DATETIME_MS else cutoff)
        skip, top = int(args.get("skip") or 0), int(args.get("top") or 100)
        page = found[skip : skip + top]
        if not page:
            respond(204, "No sessions", None, "com.microsoft:session-not-found")
            return
        respond(200, "OK", {"skip": skip + len(page), "sessions-ids": page})

    def op_get_session_state(self, target: Any, sq: SubQueue | None, args: dict[str, Any], respond: Any) -> None:
        session = self.broker.session_for(_need(sq), str(args["session-id"]))
        respond(200, "OK", {"session-state": session.state})

    def op_set_session_state(self, target: Any, sq: SubQueue | None, args: dict[str, Any], respond: Any) -> None:
        state = args.get("session-state")
        self.broker.set_session_state(_need(sq), str(args["session-id"]), None if state is None else bytes(state))
        respond(200, "OK", {})


def _ms(value: Any) -> int | None:
    """An AMQP timestamp (proton gives a `timestamp` int of ms, or a datetime) as ms since the epoch."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def _array(element_type: int, values: list[Any]) -> Array:
    return Array(UNDESCRIBED, element_type, *values)  # type: ignore[arg-type]  # UNDESCRIBED is a Constant


def _need(sq: SubQueue | None) -> SubQueue:
    if sq is None:
        raise BrokerError("amqp:not-allowed", "This operation needs a queue or subscription.")
    return sq


def _items(value: Any) -> list[Any]:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _token(value: Any) -> bytes:
    if isinstance(value, uuid.UUID):
        return value.bytes_le
    return uuid.UUID(str(value)).bytes_le


def _copy(value: Any) -> Any:
    """Detach values from proton's buffers (binary values arrive as memoryviews)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, Array):
        return Array(value.descriptor, value.type, *[_copy(v) for v in value.elements])
    return value
