"""In-memory Service Bus entities: queues, topics, subscriptions, dead-letter queues, locks and sessions.

Everything here runs on the reactor thread. Each change is recorded in the `Store`; new messages only
become visible (and sends are only acknowledged) after the store commits them. Timers (lock expiry,
scheduled messages, TTL, session locks) are kept in heaps and processed by `tick()`.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from devstack.servicebus import codec
from devstack.servicebus.config import EntityProperties, NamespaceConfig, RuleConfig, SubscriptionConfig
from devstack.servicebus.entities import (
    MAX_TTL_MS,
    SYM_DL_SOURCE,
    BrokerError,
    Consumer,
    Msg,
    Session,
    SubQueue,
    Target,
    lock_lost,
    not_found,
    now_ms,
    session_lock_lost,
    system_properties,
    text,
)
from devstack.servicebus.store import ACTIVE, DEFERRED, SCHEDULED, Store

logger = logging.getLogger(__name__)

MAX_FORWARD_HOPS = 4
DEDUP_PRUNE_MS = 30_000


class Broker:
    def __init__(self, config: NamespaceConfig, store: Store) -> None:
        self.store = store
        self.targets: dict[str, Target] = {}
        self.subqueues: dict[str, SubQueue] = {}
        for q in config.queues:
            target = Target(q.name.lower(), q.properties)
            target.queue = self._add_subqueue(SubQueue(q.name, q.properties))
            self.targets[target.path] = target
        for t in config.topics:
            target = Target(t.name.lower(), t.properties)
            for s in t.subscriptions:
                sq = self._add_subqueue(SubQueue(f"{t.name}/Subscriptions/{s.name}", s.properties))
                target.subscriptions.append((sq, s))
            self.targets[target.path] = target
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count()
        self._at(now_ms() + DEDUP_PRUNE_MS, self._prune_dedup)
        self.waiting: list[tuple[SubQueue, Consumer, int, Callable[[str | None], None]]] = []
        self.owned_sessions: dict[tuple[int, str], tuple[SubQueue, Session]] = {}

    def _add_subqueue(self, sq: SubQueue) -> SubQueue:
        self.subqueues[sq.path] = sq
        assert sq.dlq is not None
        self.subqueues[sq.dlq.path] = sq.dlq
        return sq

    # ------------------------------------------------------------ entities at runtime (administration API)

    def add_queue(self, name: str, props: EntityProperties) -> Target:
        target = Target(name.lower(), props)
        target.queue = self._add_subqueue(SubQueue(name, props))
        self.targets[target.path] = target
        return target

    def add_topic(self, name: str, props: EntityProperties) -> Target:
        target = Target(name.lower(), props)
        self.targets[target.path] = target
        return target

    def add_subscription(self, topic: Target, sub: SubscriptionConfig, topic_name: str) -> SubQueue:
        sq = self._add_subqueue(SubQueue(f"{topic_name}/Subscriptions/{sub.name}", sub.properties))
        topic.subscriptions.append((sq, sub))
        return sq

    def set_properties(self, entity: Target | SubQueue, props: EntityProperties) -> None:
        """New properties for an existing entity (sessions cannot be switched on or off)."""
        entity.props = props
        if isinstance(entity, SubQueue):
            entity.lock_ms = int(props.lock_duration.total_seconds() * 1000)
            if entity.dlq is not None:
                entity.dlq.props, entity.dlq.lock_ms = props, entity.lock_ms
            topic = self.targets.get(entity.path.split("/subscriptions/")[0])
            if topic is not None and topic.is_topic:
                topic.subscriptions = [
                    (sq, dataclasses.replace(sub, properties=props) if sq is entity else sub)
                    for sq, sub in topic.subscriptions
                ]

    def set_rules(self, topic: Target, sq: SubQueue, rules: tuple[RuleConfig, ...]) -> None:
        topic.subscriptions = [
            (s, dataclasses.replace(sub, rules=rules) if s is sq else sub) for s, sub in topic.subscriptions
        ]

    def remove_subscription(self, topic: Target, sq: SubQueue) -> None:
        topic.subscriptions = [(s, sub) for s, sub in topic.subscriptions if s is not sq]
        self._drop_subqueue(sq)

    def remove_target(self, target: Target) -> None:
        del self.targets[target.path]
        if target.queue is not None:
            self._drop_subqueue(target.queue)
        for sq, _sub in target.subscriptions:
            self._drop_subqueue(sq)
        target.subscriptions = []
        for m in target.scheduled.values():
            self.store.delete(m)
        target.scheduled.clear()
        self.store.drop_entity(target.path)

    def _drop_subqueue(self, sq: SubQueue) -> None:
        gone = f"The messaging entity '{sq.name}' was deleted."
        for part in (sq, sq.dlq):
            if part is None:
                continue
            self.subqueues.pop(part.path, None)
            for consumer in list(part.consumers):
                consumer.entity_gone(gone)
                self.release_consumer(part, consumer)
            for key, (owned_sq, session) in list(self.owned_sessions.items()):
                if owned_sq is part:
                    del self.owned_sessions[key]
                    if session.owner is not None:
                        session.owner.entity_gone(gone)
            for item in [w for w in self.waiting if w[0] is part]:
                self.waiting.remove(item)
                item[1].entity_gone(gone)
            part.messages.clear()
            part.locks.clear()
            part.ready.clear()
            part.sessions.clear()
            self.store.drop_entity(part.path)

    @property
    def entity_count(self) -> int:
        return len(self.targets) + sum(len(t.subscriptions) for t in self.targets.values())

    # ------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Load the store into memory; locks held before a crash are simply gone (released)."""
        now = now_ms()
        for path, next_seq in self.store.load_counters().items():
            if path in self.targets:
                self.targets[path].next_seq = next_seq
        for path, sid, state, updated in self.store.load_session_states():
            if path in self.subqueues:
                session = self.subqueues[path].session(sid)
                session.state, session.state_updated = state, updated
        for path, message_id, expires in self.store.load_dedup(now):
            if path in self.targets:
                self.targets[path].dedup[message_id] = expires
        count = 0
        for row in self.store.load_messages():
            m = Msg.from_row(row)
            entity, seq = m.entity, m.seq
            target = self.targets.get(entity)
            if target is not None and target.is_topic:
                self._hold_scheduled_on_topic(target, m)
            elif entity in self.subqueues:
                self._place(self.subqueues[entity], m)
            else:
                logger.warning("dropping stored message %s/%s: entity no longer configured", entity, seq)
                continue
            count += 1
        return count

    # ------------------------------------------------------------ timers

    def _at(self, when: int, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_ids), callback))

    def _prune_dedup(self) -> None:
        """Forget message ids whose duplicate-detection window has passed (memory and store)."""
        now = now_ms()
        for target in self.targets.values():
            expired = [mid for mid, expires in target.dedup.items() if expires <= now]
            for mid in expired:
                del target.dedup[mid]
        self.store.prune_dedup(now)
        self._at(now + DEDUP_PRUNE_MS, self._prune_dedup)

    def tick(self) -> None:
        now = now_ms()
        while self._timers and self._timers[0][0] <= now:
            _, _, callback = heapq.heappop(self._timers)
            try:
                callback()
            except Exception:
                logger.exception("broker timer failed")
        for sq, session in list(self.owned_sessions.values()):
            if session.owner is not None and session.locked_until <= now:
                owner = session.owner
                self.release_session(sq, session, expired=True)
                owner.session_lost(session.sid)
        for item in list(self.waiting):
            sq, _consumer, deadline, done = item
            if deadline <= now:
                self.waiting.remove(item)
                done(None)

    # ------------------------------------------------------------ sending

    def target(self, path: str) -> Target:
        target = self.targets.get(path.lower())
        if target is None:
            raise not_found(path)
        return target

    def send(
        self, target: Target, parsed: Iterable[codec.ParsedMessage], on_stored: Callable[[list[int]], None]
    ) -> None:
        """Store the messages, then make them visible and call ``on_stored`` with their sequence numbers."""
        placed: list[tuple[SubQueue | Target, Msg]] = []
        seqs: list[int] = []
        now = now_ms()
        for p in parsed:
            seqs.append(self._route(target, p, None, placed, now, 0))

        def publish() -> None:
            touched: dict[int, SubQueue] = {}
            for where, m in placed:
                if isinstance(where, Target):
                    self._hold_scheduled_on_topic(where, m)
                else:
                    self._place(where, m)
                    touched[id(where)] = where
            for sq in touched.values():
                self.pump(sq)
            on_stored(seqs)

        self.store.after_commit(publish)

    def _route(
        self,
        target: Target,
        p: codec.ParsedMessage,
        app_override: bytes | None,
        placed: list[tuple[SubQueue | Target, Msg]],
        now: int,
        hops: int,
    ) -> int:
        message_id = text(p.properties.get("message_id"))
        props = target.props
        if props.requires_duplicate_detection and message_id is not None:
            seen = target.dedup.get(message_id)
            if seen is not None and seen > now:
                logger.debug("duplicate message %s on %s dropped", message_id, target.path)
                return 0
            expires = now + int(props.duplicate_detection_window.total_seconds() * 1000)
            target.dedup[message_id] = expires
            self.store.dedup(target.path, message_id, expires)
        scheduled_at = p.annotations.get("x-opt-scheduled-enqueue-time")
        scheduled = int(scheduled_at.timestamp() * 1000) if isinstance(scheduled_at, datetime) else 0
        seq = target.next_seq
        target.next_seq += 1
        self.store.counter(target.path, target.next_seq)
        m = Msg(
            entity=target.path, seq=seq, state=SCHEDULED if scheduled > now else ACTIVE,
            session_id=text(p.properties.get("group_id")), message_id=message_id,
            enqueued=max(now, scheduled), scheduled=scheduled, expires=0, delivery_count=0, ttl=p.ttl,
            priority=p.priority, durable=p.durable, ann_count=p.ann_count, ann=p.ann_pairs, props=p.props,
            app=p.app if app_override is None else app_override, tail=p.tail,
        )  # fmt: skip
        if target.queue is not None:
            sq = target.queue
            forward = sq.props.forward_to
            if forward and hops < MAX_FORWARD_HOPS and m.state == ACTIVE:
                return self._route(self.target(forward), p, app_override, placed, now, hops + 1)
            self._set_expiry(m, sq.props)
            self.store.insert(m)
            placed.append((sq, m))
        elif m.state == SCHEDULED:
            self.store.insert(m)
            placed.append((target, m))
        else:
            self._fanout(target, m, p.properties, p.application, placed, now, hops)
        return seq

    def _fanout(
        self,
        topic: Target,
        m: Msg,
        properties: Mapping[str, Any],
        application: Mapping[Any, Any],
        placed: list[tuple[SubQueue | Target, Msg]],
        now: int,
        hops: int,
    ) -> None:
        system = system_properties(properties)
        user = {str(k): v for k, v in application.items()}
        for sq, sub in topic.subscriptions:
            copies: list[bytes | None] = []
            plain_match = False
            for rule in sub.rules:
                try:
                    if not rule.filter.matches(system, user):
                        continue
                    if rule.action is None:
                        plain_match = True
                    else:
                        copies.append(codec.application_section(rule.action.apply(system, user)))
                except Exception:
                    logger.exception("rule %s on %s failed; message not copied by it", rule.name, sq.path)
            if plain_match:
                copies.insert(0, None)
            for app in copies:
                forward = sq.props.forward_to
                if forward and hops < MAX_FORWARD_HOPS:
                    p = codec.parse_message(self._raw(m, app))
                    self._route(self.target(forward), p, None, placed, now, hops + 1)
                    continue
                copy = m.copy(entity=sq.path, app=m.app if app is None else app, state=ACTIVE)
                self._set_expiry(copy, topic.props, sq.props)
                self.store.insert(copy)
                placed.append((sq, copy))

    @staticmethod
    def _raw(m: Msg, app: bytes | None) -> bytes:
        """The message as a sender would have sent it (for forwarding)."""
        ann = codec.annotations_section(m.ann, m.ann_count) if m.ann_count else b""
        header = codec.header_section(m.ttl, m.priority, m.durable, 0) if m.ttl is not None else b""
        return header + ann + m.props + (m.app if app is None else app) + m.tail

    @staticmethod
    def _set_expiry(m: Msg, *entities: EntityProperties) -> None:
        """The message's own TTL, capped by each entity's default TTL (queue; or topic and subscription)."""
        ttl = m.ttl
        for props in entities:
            if props.default_ttl is not None:
                default_ms = int(props.default_ttl.total_seconds() * 1000)
                ttl = default_ms if ttl is None else min(ttl, default_ms)
        m.expires = m.enqueued + ttl if ttl is not None and ttl < MAX_TTL_MS else 0

    def _hold_scheduled_on_topic(self, topic: Target, m: Msg) -> None:
        topic.scheduled[m.seq] = m
        self._at(m.scheduled, lambda: self._fire_topic_schedule(topic, m.seq))

    def _fire_topic_schedule(self, topic: Target, seq: int) -> None:
        m = topic.scheduled.pop(seq, None)
        if m is None:
            return
        self.store.delete(m)
        placed: list[tuple[SubQueue | Target, Msg]] = []
        properties = dict(zip(codec.PROPERTY_FIELDS, codec.decode_value(m.props)[0] or [], strict=False))
        application = codec.decode_value(m.app)[0] if m.app else {}
        m.state, m.enqueued = ACTIVE, now_ms()
        self._fanout(topic, m, properties, application or {}, placed, m.enqueued, 0)
        for where, copy in placed:
            if isinstance(where, SubQueue):
                self._place(where, copy)
                self.pump(where)

    # ------------------------------------------------------------ placing and delivering

    def _place(self, sq: SubQueue, m: Msg) -> None:
        """Make a stored message visible in its sub-queue (index, timers)."""
        sq.messages[m.seq] = m
        if m.state == ACTIVE:
            heapq.heappush(sq.ready_heap(m), m.seq)
            if sq.sessions_enabled:
                self._offer_session(sq, m.session_id or "")
        elif m.state == SCHEDULED:
            self._at(m.scheduled, lambda: self._fire_schedule(sq, m))
        if m.expires:
            self._at(m.expires, lambda: self._check_expiry(sq, m))

    def _fire_schedule(self, sq: SubQueue, m: Msg) -> None:
        if sq.messages.get(m.seq) is not m or m.state != SCHEDULED:
            return
        m.state = ACTIVE
        self.store.update(m)
        heapq.heappush(sq.ready_heap(m), m.seq)
        if sq.sessions_enabled:
            self._offer_session(sq, m.session_id or "")
        self.pump(sq)

    def _check_expiry(self, sq: SubQueue, m: Msg) -> None:
        if sq.messages.get(m.seq) is m and m.state == ACTIVE and m.lock is None:
            self._expire(sq, m)

    def _expire(self, sq: SubQueue, m: Msg) -> None:
        if sq.props.dead_lettering_on_expiration and not sq.is_dlq:
            self.dead_letter(sq, m, "TTLExpiredException", "The message expired and was dead lettered.")
        else:
            self._remove(sq, m)

    def _remove(self, sq: SubQueue, m: Msg) -> None:
        sq.messages.pop(m.seq, None)
        if m.lock is not None:
            sq.locks.pop(m.lock, None)
            m.lock = None
        self.store.delete(m)

    def _next_ready(self, sq: SubQueue, heap: list[int], now: int) -> Msg | None:
        while heap:
            seq = heapq.heappop(heap)
            m = sq.messages.get(seq)
            if m is None or m.state != ACTIVE or m.lock is not None:
                continue
            if m.expires and m.expires <= now:
                self._expire(sq, m)
                continue
            return m
        return None

    def pump(self, sq: SubQueue) -> None:
        """Hand ready messages to the sub-queue's consumers that have credit."""
        if sq.sessions_enabled:
            for owned_sq, session in list(self.owned_sessions.values()):
                if owned_sq is sq and session.owner is not None and session.ready:
                    self.pump_consumer(sq, session.owner, session)
            return
        consumers = sq.consumers
        if len(consumers) > 1:
            consumers.append(consumers.pop(0))  # rotate so that several receivers share the load
        for consumer in list(consumers):
            if not sq.ready:
                break
            self.pump_consumer(sq, consumer, None)

    def pump_consumer(self, sq: SubQueue, consumer: Consumer, session: Session | None) -> None:
        now = now_ms()
        heap = session.ready if session is not None else sq.ready
        while heap and consumer.credit > 0:
            m = self._next_ready(sq, heap, now)
            if m is None:
                break
            if consumer.receive_and_delete:
                self._remove(sq, m)
                consumer.send(uuid.uuid4().bytes, m.encode(), True)
                continue
            token = uuid.uuid4().bytes
            m.lock, m.owner = token, consumer
            sq.locks[token] = m
            if session is not None:
                m.locked_until = session.locked_until
            else:
                m.locked_until = now + sq.lock_ms
                self._at(m.locked_until, lambda m=m, token=token: self._lock_timeout(sq, m, token))  # type: ignore[misc]
            consumer.send(token, m.encode(m.locked_until), False)

    def _lock_timeout(self, sq: SubQueue, m: Msg, token: bytes) -> None:
        if m.lock != token or sq.locks.get(token) is not m:
            return
        if m.locked_until > now_ms():  # renewed meanwhile
            self._at(m.locked_until, lambda: self._lock_timeout(sq, m, token))
            return
        self._requeue(sq, m, True)

    # ------------------------------------------------------------ settlement

    def locked(self, sq: SubQueue, token: bytes) -> Msg:
        m = sq.locks.get(token)
        if m is None:
            raise lock_lost()
        if m.locked_until <= now_ms() and not sq.sessions_enabled:
            raise lock_lost()
        return m

    def complete(self, sq: SubQueue, token: bytes) -> None:
        self._remove(sq, self.locked(sq, token))

    def _unlock(self, sq: SubQueue, m: Msg) -> None:
        if m.lock is not None:
            sq.locks.pop(m.lock, None)
        m.lock, m.owner, m.locked_until = None, None, 0

    def abandon(
        self, sq: SubQueue, token: bytes, *, count: bool = True, properties: Mapping[str, Any] | None = None
    ) -> None:
        """Give a locked message back (abandon, lock expiry); ``count`` False for a plain release."""
        m = self.locked(sq, token) if count else sq.locks.get(token)
        if m is not None:
            self._requeue(sq, m, count, properties)

    def _requeue(self, sq: SubQueue, m: Msg, count: bool, properties: Mapping[str, Any] | None = None) -> None:
        self._unlock(sq, m)
        if properties:
            self._modify_app(m, properties)
        if count:
            m.delivery_count += 1
            if m.delivery_count >= sq.props.max_delivery_count and not sq.is_dlq:
                self.dead_letter(
                    sq, m, "MaxDeliveryCountExceeded",
                    f"Message could not be consumed after {sq.props.max_delivery_count} delivery attempts.",
                )  # fmt: skip
                return
            self.store.update(m)
        if m.state == DEFERRED:
            return
        if m.expires and m.expires <= now_ms():
            self._expire(sq, m)
            return
        heapq.heappush(sq.ready_heap(m), m.seq)
        if sq.sessions_enabled:
            self._offer_session(sq, m.session_id or "")
        self.pump(sq)

    def defer(self, sq: SubQueue, token: bytes, properties: Mapping[str, Any] | None = None) -> None:
        m = self.locked(sq, token)
        self._unlock(sq, m)
        if properties:
            self._modify_app(m, properties)
        m.state = DEFERRED
        self.store.update(m)

    def dead_letter_locked(
        self, sq: SubQueue, token: bytes, reason: str | None, description: str | None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        m = self.locked(sq, token)
        if properties:
            self._modify_app(m, properties)
        self.dead_letter(sq, m, reason, description)

    def dead_letter(self, sq: SubQueue, m: Msg, reason: str | None, description: str | None) -> None:
        self._remove(sq, m)
        if sq.is_dlq or sq.dlq is None:
            return
        extra: dict[str, Any] = {}
        if reason is not None:
            extra["DeadLetterReason"] = reason
        if description is not None:
            extra["DeadLetterErrorDescription"] = description
        dead = m.copy(entity=sq.dlq.path, state=ACTIVE, expires=0)
        dead.lock, dead.owner = None, None
        self._modify_app(dead, extra)
        dead.ann += SYM_DL_SOURCE + codec.enc_value(sq.name)
        dead.ann_count += 2
        self.store.insert(dead)
        self._place(sq.dlq, dead)
        self.pump(sq.dlq)

    @staticmethod
    def _modify_app(m: Msg, changes: Mapping[str, Any]) -> None:
        if not changes:
            return
        current = codec.decode_value(m.app)[0] if m.app else {}
        merged = {str(k): v for k, v in (current or {}).items()}
        merged.update({str(k): v for k, v in changes.items()})
        m.app = codec.application_section(merged)

    def renew(self, sq: SubQueue, token: bytes) -> int:
        m = self.locked(sq, token)
        m.locked_until = now_ms() + sq.lock_ms
        return m.locked_until

    def release_consumer(self, sq: SubQueue, consumer: Consumer) -> None:
        """A receiver link went away: forget it; its session (if any) is unlocked."""
        if consumer in sq.consumers:
            sq.consumers.remove(consumer)
        self.waiting = [w for w in self.waiting if w[1] is not consumer]
        for owned_sq, session in list(self.owned_sessions.values()):
            if session.owner is consumer:
                self.release_session(owned_sq, session, expired=False)

    # ------------------------------------------------------------ sessions

    def release_session(self, sq: SubQueue, session: Session, *, expired: bool) -> None:
        # Forget the lock before offering the session: a waiting receiver may take it over at once, and its
        # new entry in owned_sessions must survive (else its lock would never expire nor be released).
        self.owned_sessions.pop((id(sq), session.sid), None)
        session.owner = None
        session.locked_until = 0
        held = [m for m in sq.locks.values() if (m.session_id or "") == session.sid]
        for m in held:
            self._requeue(sq, m, expired)
        self._offer_session(sq, session.sid)

    def acquire_session(self, sq: SubQueue, consumer: Consumer, sid: str | None) -> str | None:
        """Lock the named session, or any session with messages; None when no session is free."""
        now = now_ms()
        if sid is None:
            sid = self._next_ready_session(sq)
            if sid is None:
                return None
        session = sq.session(sid)
        if session.owner is not None and session.owner is not consumer:
            raise BrokerError(
                "com.microsoft:session-cannot-be-locked",
                f"The requested session '{sid}' cannot be accepted. It may be locked by another receiver.",
            )
        session.owner = consumer
        session.locked_until = now + sq.lock_ms
        self.owned_sessions[(id(sq), sid)] = (sq, session)
        return sid

    def _next_ready_session(self, sq: SubQueue) -> str | None:
        """A free session with messages ready. Sessions passed on the way that hold nothing (no owner, no ready
        message, no state ever set) are forgotten, as Service Bus has no such session: without that, every
        session id ever used stayed and each accept walked them all. A message for one of them later brings it
        back (``SubQueue.session``)."""
        empty: list[str] = []
        found = None
        for candidate in sq.sessions.values():
            if candidate.owner is not None:
                continue
            if self._has_ready(sq, candidate):
                found = candidate.sid
                break
            if candidate.state is None and not candidate.state_updated:
                empty.append(candidate.sid)
        for sid in empty:
            del sq.sessions[sid]
        return found

    def _has_ready(self, sq: SubQueue, session: Session) -> bool:
        heap = session.ready
        while heap:
            m = sq.messages.get(heap[0])
            if m is not None and m.state == ACTIVE and m.lock is None:
                return True
            heapq.heappop(heap)
        return False

    def wait_for_session(
        self, sq: SubQueue, consumer: Consumer, deadline: int, done: Callable[[str | None], None]
    ) -> None:
        self.waiting.append((sq, consumer, deadline, done))

    def _offer_session(self, sq: SubQueue, sid: str) -> None:
        """A session got ready messages, or was unlocked: give it to a NEXT_AVAILABLE receiver that is waiting
        if it has messages (a session whose messages were all settled stays with nobody, as in Service Bus, where
        accepting the next session gets one with messages)."""
        session = sq.sessions.get(sid)
        if session is None or session.owner is not None or not self._has_ready(sq, session):
            return
        for item in self.waiting:
            if item[0] is sq:
                self.waiting.remove(item)
                _, consumer, _, done = item
                self.acquire_session(sq, consumer, sid)
                done(sid)
                return

    def session_for(self, sq: SubQueue, sid: str, consumer: Consumer | None = None) -> Session:
        session = sq.sessions.get(sid)
        if session is None or session.owner is None or (consumer is not None and session.owner is not consumer):
            raise session_lock_lost(sid)
        return session

    def renew_session(self, sq: SubQueue, sid: str) -> int:
        session = self.session_for(sq, sid)
        session.locked_until = now_ms() + sq.lock_ms
        for m in sq.locks.values():
            if (m.session_id or "") == sid:
                m.locked_until = session.locked_until
        return session.locked_until

    def set_session_state(self, sq: SubQueue, sid: str, state: bytes | None) -> None:
        session = self.session_for(sq, sid)
        session.state, session.state_updated = state, now_ms()
        self.store.session_state(sq.path, sid, state, session.state_updated)

    def list_sessions(self, sq: SubQueue, updated_after: int | None) -> list[str]:
        """Session ids with messages or stored state; or, with ``updated_after`` (ms), whose state changed since."""
        if updated_after is not None:
            return sorted(s.sid for s in sq.sessions.values() if s.state_updated > updated_after)
        found = {s.sid for s in sq.sessions.values() if s.state is not None}
        found.update(m.session_id or "" for m in sq.messages.values() if m.state != SCHEDULED)
        return sorted(found)

    # ------------------------------------------------------------ management helpers

    def schedule(
        self, target: Target, parsed: list[codec.ParsedMessage], on_stored: Callable[[list[int]], None]
    ) -> None:
        self.send(target, parsed, on_stored)

    def cancel_scheduled(self, target: Target, seqs: Iterable[int]) -> None:
        for seq in seqs:
            if target.queue is not None:
                m = target.queue.messages.get(seq)
                if m is not None and m.state == SCHEDULED:
                    self._remove(target.queue, m)
            else:
                m = target.scheduled.pop(seq, None)
                if m is not None:
                    self.store.delete(m)

    def peek(self, sq: SubQueue, from_seq: int, count: int, sid: str | None) -> list[Msg]:
        now = now_ms()
        found = []
        for seq in sorted(s for s in sq.messages if s >= from_seq):
            m = sq.messages[seq]
            if sid is not None and (m.session_id or "") != sid:
                continue
            if m.expires and m.expires <= now and m.lock is None and m.state == ACTIVE:
                continue
            found.append(m)
            if len(found) >= count:
                break
        return found

    def receive_deferred(
        self, sq: SubQueue, seqs: Iterable[int], delete: bool, sid: str | None, owner: Consumer | None
    ) -> list[tuple[Msg, bytes, int]]:
        now = now_ms()
        result = []
        for seq in seqs:
            m = sq.messages.get(seq)
            if m is None or m.state != DEFERRED or m.lock is not None or (sid is not None and m.session_id != sid):
                raise BrokerError(
                    "com.microsoft:message-not-found",
                    f"Failed to retrieve the deferred message with sequence {seq}.",
                    404,
                )
            token = uuid.uuid4().bytes
            if delete:
                self._remove(sq, m)
                result.append((m, token, 0))
                continue
            m.lock, m.owner, m.locked_until = token, owner, now + sq.lock_ms
            sq.locks[token] = m
            self._at(m.locked_until, lambda m=m, token=token: self._lock_timeout(sq, m, token))  # type: ignore[misc]
            result.append((m, token, m.locked_until))
        return result
