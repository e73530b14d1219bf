"""The broker's data model: messages, sessions, sub-queues (queue, subscription, dead-letter queue),
send targets (queue, topic), and the errors operations raise with their AMQP conditions."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from devstack.servicebus import codec
from devstack.servicebus.config import EntityProperties, SubscriptionConfig
from devstack.servicebus.store import ACTIVE, DEFERRED, SCHEDULED, Row, StoredMessage

DLQ = "$deadletterqueue"
MAX_FORWARD_HOPS = 4
MAX_TTL_MS = 0xFFFFFFFF  # the largest header ttl (uint ms): treated as "never expires"

_SYM_SEQ = codec.enc_symbol("x-opt-sequence-number")
_SYM_ENQ = codec.enc_symbol("x-opt-enqueued-time")
_SYM_LOCKED = codec.enc_symbol("x-opt-locked-until")
_SYM_STATE = codec.enc_symbol("x-opt-message-state")
SYM_DL_SOURCE = codec.enc_symbol("x-opt-deadletter-source")
_WIRE_STATE = {ACTIVE: 0, DEFERRED: 1, SCHEDULED: 2}


def now_ms() -> int:
    return int(time.time() * 1000)


class BrokerError(Exception):
    """An operation failed with an AMQP error condition the SDK maps to an exception."""

    def __init__(self, condition: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description
        self.status = status


def not_found(what: str) -> BrokerError:
    return BrokerError("amqp:not-found", f"The messaging entity '{what}' could not be found.", 404)


def lock_lost() -> BrokerError:
    return BrokerError(
        "com.microsoft:message-lock-lost", "The lock on the message is lost or the message was already settled.", 410
    )


def session_lock_lost(sid: str) -> BrokerError:
    return BrokerError("com.microsoft:session-lock-lost", f"The session lock for '{sid}' is lost.", 410)


class Consumer(Protocol):
    """A receiver link as the broker sees it (implemented by the AMQP layer)."""

    receive_and_delete: bool

    @property
    def credit(self) -> int: ...

    def send(self, tag: bytes, payload: bytes, settled: bool) -> None: ...

    def session_lost(self, sid: str) -> None: ...

    def entity_gone(self, description: str) -> None: ...


@dataclass(slots=True, eq=False)
class Msg(StoredMessage):
    """One message in one sub-queue: its stored columns, plus lock state."""

    lock: bytes | None = None
    locked_until: int = 0
    owner: Consumer | None = None

    @classmethod
    def from_row(cls, row: Row) -> Msg:
        entity, seq, state, sid, mid, enq, sched, exp, dc, ttl, prio, durable, ann_count, ann, props, app, tail = row
        return cls(
            entity,
            seq,
            state,
            sid,
            mid,
            enq,
            sched,
            exp,
            dc,
            ttl,
            prio,
            bool(durable),
            ann_count,
            ann,
            props,
            app,
            tail,
        )

    def copy(self, **changes: Any) -> Msg:
        return dataclasses.replace(self, lock=None, locked_until=0, owner=None, **changes)

    def encode(self, locked_until: int | None = None) -> bytes:
        """The message as delivered: our header and annotations around the stored sections."""
        pairs = (
            self.ann
            + _SYM_SEQ + codec.enc_long(self.seq)
            + _SYM_ENQ + codec.enc_timestamp(self.enqueued)
            + _SYM_STATE + codec.enc_long(_WIRE_STATE.get(self.state, 0))
        )  # fmt: skip
        count = self.ann_count + 6
        if locked_until is not None:
            pairs += _SYM_LOCKED + codec.enc_timestamp(locked_until)
            count += 2
        return (
            codec.header_section(self.ttl, self.priority, self.durable, self.delivery_count)
            + codec.annotations_section(pairs, count)
            + self.props
            + self.app
            + self.tail
        )


class Session:
    __slots__ = ("locked_until", "owner", "ready", "sid", "state", "state_updated")

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.ready: list[int] = []
        self.owner: Consumer | None = None
        self.locked_until = 0
        self.state: bytes | None = None
        self.state_updated = 0  # ms; when the session state was last set


class SubQueue:
    """Something a receiver can attach to: a queue, a subscription, or the dead-letter queue of either."""

    def __init__(self, name: str, props: EntityProperties, *, dead_letter_of: SubQueue | None = None) -> None:
        self.name = name  # as configured, for display
        self.path = name.lower()
        self.props = props
        self.lock_ms = int(props.lock_duration.total_seconds() * 1000)
        self.main = dead_letter_of or self
        self.is_dlq = dead_letter_of is not None
        self.sessions_enabled = props.requires_session and not self.is_dlq
        self.messages: dict[int, Msg] = {}
        self.ready: list[int] = []
        self.sessions: dict[str, Session] = {}
        self.locks: dict[bytes, Msg] = {}
        self.consumers: list[Consumer] = []
        self.status = "Active"  # set through the administration API: Disabled / ReceiveDisabled refuse receivers
        self.dlq: SubQueue | None = (
            None if self.is_dlq else SubQueue(f"{name}/$DeadLetterQueue", props, dead_letter_of=self)
        )

    def session(self, sid: str) -> Session:
        session = self.sessions.get(sid)
        if session is None:
            session = self.sessions[sid] = Session(sid)
        return session

    def ready_heap(self, m: Msg) -> list[int]:
        return self.session(m.session_id or "").ready if self.sessions_enabled else self.ready


class Target:
    """Something a sender can attach to: a queue or a topic. Owns the sequence-number counter."""

    def __init__(self, path: str, props: EntityProperties) -> None:
        self.path = path
        self.props = props
        self.next_seq = 1
        self.dedup: dict[str, int] = {}
        self.queue: SubQueue | None = None
        self.subscriptions: list[tuple[SubQueue, SubscriptionConfig]] = []
        self.scheduled: dict[int, Msg] = {}  # topics only; a queue keeps scheduled messages in its SubQueue
        self.status = "Active"  # set through the administration API: Disabled / SendDisabled refuse sends

    @property
    def is_topic(self) -> bool:
        return self.queue is None


def system_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The broker properties SQL and correlation filters see, under their .NET names."""
    return {
        "MessageId": text(properties.get("message_id")),
        "CorrelationId": text(properties.get("correlation_id")),
        "Label": properties.get("subject"),
        "To": properties.get("to"),
        "ReplyTo": properties.get("reply_to"),
        "SessionId": properties.get("group_id"),
        "ReplyToSessionId": properties.get("reply_to_group_id"),
        "ContentType": properties.get("content_type"),
    }


def text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
