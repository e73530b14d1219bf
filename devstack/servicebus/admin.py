"""The Service Bus management REST API (what `ServiceBusAdministrationClient` calls), on the broker's thread.

Routes (api-version 2021-05, ATOM/XML bodies, see `atom.py`):
`GET /$namespaceinfo`; `GET /$Resources/queues|topics?$skip&$top`; `GET|PUT|DELETE /{queue or topic}`;
`GET /{topic}/subscriptions`; `GET|PUT|DELETE /{topic}/subscriptions/{sub}`;
`GET /{topic}/subscriptions/{sub}/rules`; `GET|PUT|DELETE /{topic}/subscriptions/{sub}/rules/{rule}`.
A PUT without `If-Match` creates (409 if the entity exists), with `If-Match: *` updates (404 if it does not).

Entity properties are validated exactly like `Config.json` (`config.entity_properties` / `config.rule_config`).
`Status` is enforced (Disabled / SendDisabled refuse sends, Disabled / ReceiveDisabled refuse receivers). Properties
the broker does not act on (size quota, auto-delete on idle, partitioning, user metadata,
ForwardDeadLetteredMessagesTo, ...) are kept and returned as given. Runtime properties come from the broker's
state: active (deferred included, as in Azure), dead-letter and scheduled counts, size in bytes, and the
created/updated/accessed times; transfer counts are always 0 (no `$Transfer` queues).

Every change is written to the store (`admin_entities`) before it is answered and is applied over the config
file at the next start (`load`), so runtime entities survive a restart or `kill -9` like configured ones.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from devstack.servicebus import atom
from devstack.servicebus.broker import Broker
from devstack.servicebus.config import (
    DEFAULT_RULE_NAME,
    ConfigError,
    EntityProperties,
    RuleConfig,
    SubscriptionConfig,
    entity_properties,
    rule_config,
)
from devstack.servicebus.configvalues import as_name, iso_duration
from devstack.servicebus.entities import SubQueue, Target
from devstack.servicebus.filters import CorrelationFilter, FalseFilter, SqlFilter, TrueFilter
from devstack.servicebus.store import SCHEDULED

logger = logging.getLogger(__name__)

QUEUE, TOPIC, SUBSCRIPTION, RULE = "queue", "topic", "subscription", "rule"
_Entity = TypeVar("_Entity")

_APPLIES = {
    "LockDuration": {QUEUE, SUBSCRIPTION},
    "MaxDeliveryCount": {QUEUE, SUBSCRIPTION},
    "RequiresSession": {QUEUE, SUBSCRIPTION},
    "DefaultMessageTimeToLive": {QUEUE, TOPIC, SUBSCRIPTION},
    "DeadLetteringOnMessageExpiration": {QUEUE, SUBSCRIPTION},
    "RequiresDuplicateDetection": {QUEUE, TOPIC},
    "DuplicateDetectionHistoryTimeWindow": {QUEUE, TOPIC},
    "ForwardTo": {QUEUE, SUBSCRIPTION},
}
_BOOLEAN = {"RequiresSession", "DeadLetteringOnMessageExpiration", "RequiresDuplicateDetection"}
# Stored and returned as given, not acted on; the values are Azure's defaults.
_EXTRA: dict[str, dict[str, str | None]] = {
    QUEUE: {
        "MaxSizeInMegabytes": "1024", "EnableBatchedOperations": "true", "IsAnonymousAccessible": "false",
        "Status": "Active", "UserMetadata": None, "SupportOrdering": "true", "AutoDeleteOnIdle": atom.MAX_TIMESPAN,
        "EnablePartitioning": "false", "EntityAvailabilityStatus": "Available",
        "ForwardDeadLetteredMessagesTo": None, "EnableExpress": "false", "MaxMessageSizeInKilobytes": "256",
    },
    TOPIC: {
        "MaxSizeInMegabytes": "1024", "EnableBatchedOperations": "true", "FilteringMessagesBeforePublishing": "false",
        "IsAnonymousAccessible": "false", "Status": "Active", "SupportOrdering": "true",
        "AutoDeleteOnIdle": atom.MAX_TIMESPAN, "EnablePartitioning": "false", "EntityAvailabilityStatus": "Available",
        "EnableSubscriptionPartitioning": "false", "EnableExpress": "false", "UserMetadata": None,
        "MaxMessageSizeInKilobytes": "256",
    },
    SUBSCRIPTION: {
        "DeadLetteringOnFilterEvaluationExceptions": "true", "EnableBatchedOperations": "true", "Status": "Active",
        "UserMetadata": None, "ForwardDeadLetteredMessagesTo": None, "AutoDeleteOnIdle": atom.MAX_TIMESPAN,
        "EntityAvailabilityStatus": "Available",
    },
}  # fmt: skip
STATUSES = ("Active", "Disabled", "SendDisabled", "ReceiveDisabled")
_NEVER_MS = 10_000 * 86_400_000  # a time to live this long means "never expires"
_SUB_RE = re.compile(r"^(?P<topic>.+)/subscriptions(?:/(?P<sub>[^/]+)(?:/rules(?:/(?P<rule>[^/]+))?)?)?$", re.I)
_KIND_ORDER = {QUEUE: 0, TOPIC: 0, SUBSCRIPTION: 1, RULE: 2}


@dataclass
class Response:
    status: int
    body: str = ""

    @property
    def content_type(self) -> str:
        return "application/atom+xml;type=entry;charset=utf-8" if self.status < 400 else "application/xml"


class AdminError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Meta:
    """What the administration API adds to an entity: times and the properties kept as given."""

    created: int
    updated: int
    extra: dict[str, str] = field(default_factory=dict)
    name: str = ""  # as given at creation (paths are lower case)
    sql: dict[str, Any] = field(default_factory=dict)  # rules: SQL expressions as given, with their parameters


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # URL path without the leading slash, percent-decoded
    query: dict[str, str]
    if_match: str | None
    body: bytes
    base: str  # https://host:port as the client addressed us


def now_ms() -> int:
    return int(time.time() * 1000)


class Admin:
    def __init__(self, broker: Broker, namespace: str) -> None:
        self.broker = broker
        self.namespace = namespace
        self.started = now_ms()
        self.meta: dict[str, Meta] = {}

    # ------------------------------------------------------------ startup

    def load(self) -> int:
        """Apply the entities created, changed or deleted at runtime over the configured ones."""
        rows = sorted(self.broker.store.load_admin_entities(), key=lambda r: (_KIND_ORDER.get(r[1], 3), r[0]))
        for path, kind, doc in rows:
            try:
                if doc is None:
                    self._delete(kind, path, record=False)
                else:
                    self._apply(kind, path, json.loads(doc), record=False)
            except (AdminError, ConfigError, ValueError, KeyError) as exc:
                logger.warning("stored %s %s could not be restored: %s", kind, path, exc)
        return len(rows)

    # ------------------------------------------------------------ dispatch

    def handle(self, request: Request) -> Response:
        try:
            response = self._route(request)
        except AdminError as err:
            response = Response(err.status, atom.error(err.status, err.detail))
        except (ConfigError, atom.AtomError, ValueError) as exc:
            response = Response(400, atom.error(400, str(exc)))
        self.broker.store.flush()  # a change is on disk before it is answered
        return response

    def _route(self, request: Request) -> Response:
        path, method = request.path.strip("/"), request.method
        lowered = path.lower()
        if lowered == "$namespaceinfo" and method == "GET":
            return self._namespace_info(request)
        if lowered in ("$resources/queues", "$resources/topics") and method == "GET":
            return self._list_entities(request, QUEUE if lowered.endswith("queues") else TOPIC)
        if not path or path.startswith("$"):
            raise AdminError(404, f"No management resource at '/{path}'.")
        match = _SUB_RE.match(path)
        if match is None:
            return self._entity(request, path)
        topic, sub, rule = match.group("topic"), match.group("sub"), match.group("rule")
        if sub is None:
            if method != "GET":
                raise AdminError(405, f"{method} is not allowed on a subscription list.")
            return self._list_subscriptions(request, topic)
        if rule is None and not path.lower().endswith("/rules"):
            return self._subscription(request, topic, sub)
        if rule is None:
            if method != "GET":
                raise AdminError(405, f"{method} is not allowed on a rule list.")
            return self._list_rules(request, topic, sub)
        return self._rule(request, topic, sub, rule)

    # ------------------------------------------------------------ queues and topics

    def _entity(self, request: Request, name: str) -> Response:
        path = name.lower()
        target = self.broker.targets.get(path)
        kind = QUEUE if target is not None and target.queue is not None else TOPIC
        what = f"The messaging entity '{name}'"
        if request.method == "GET":
            return Response(200, self._entity_entry(request.base, _found(target, what)))
        if request.method == "DELETE":
            _found(target, what)
            self._delete(kind, path)
            return Response(200)
        exists = target is not None
        parsed = _put_description(request, exists, what, ("QueueDescription", "TopicDescription"), f"'/{name}'")
        kind = QUEUE if parsed.kind == "QueueDescription" else TOPIC
        if exists and (target.queue is not None) != (kind == QUEUE):  # type: ignore[union-attr]
            raise AdminError(409, f"'{name}' exists as another kind of entity.")
        doc = self._document(kind, name, atom.fields(parsed.element), path)
        self._apply(kind, path, doc)
        target = self.broker.targets[path]
        return Response(200 if exists else 201, self._entity_entry(request.base, target))

    def _document(self, kind: str, name: str, given: dict[str, str], path: str) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for key, text in given.items():
            if key in _APPLIES and kind in _APPLIES[key]:
                value = _property(key, text)
                if value is not None:
                    properties[key] = value
            elif key in _EXTRA[kind]:
                extra[key] = text
        old = self.meta.get(path)
        now = now_ms()
        return {
            "Name": old.name if old is not None and old.name else name,
            "Properties": properties,
            "Extra": extra,
            "Created": old.created if old is not None else now,
            "Updated": now,
        }

    def _apply(self, kind: str, path: str, doc: dict[str, Any], *, record: bool = True) -> None:
        """Create or update an entity from its stored document (validated like the config file)."""
        name = doc["Name"]
        if kind == RULE:
            self._apply_rule(path, doc, record=record)
            return
        where = f"{kind} '{name}'"
        props = entity_properties(doc["Properties"], where, kind)
        status = (doc.get("Extra") or {}).get("Status", "Active")
        if status not in STATUSES:
            raise AdminError(400, f"Status: {status!r} is not one of {', '.join(STATUSES)}.")
        if kind == SUBSCRIPTION:
            topic = self._topic(doc["Topic"])
            self._check_forward(props, f"{doc['Topic']}/{name}")
            existing = self._subscription_of(topic, name)
            if existing is None:
                as_name(name, where, allow_slash=False)
                self.broker.add_subscription(topic, SubscriptionConfig(name, props), self._name_of(topic))
            else:
                self._keep_sessions(existing, props, name)
                self.broker.set_properties(existing, props)
        else:
            self._check_forward(props, name)
            target = self.broker.targets.get(path)
            if target is None:
                as_name(name, where)
                target = (self.broker.add_queue if kind == QUEUE else self.broker.add_topic)(name, props)
            else:
                if target.queue is not None:
                    self._keep_sessions(target.queue, props, name)
                    self.broker.set_properties(target.queue, props)
                target.props = props
        self.meta[path] = Meta(doc["Created"], doc["Updated"], dict(doc.get("Extra") or {}), name)
        self._set_status(kind, path, self.meta[path].extra.get("Status", "Active"))
        if record:
            self.broker.store.admin_entity(path, kind, json.dumps(doc))

    def _set_status(self, kind: str, path: str, status: str) -> None:
        """Status the broker enforces: Disabled, SendDisabled (queues, topics), ReceiveDisabled (queues, subs)."""
        if kind == SUBSCRIPTION:
            found = self._find_subscription(path)
            if found is not None:
                found[1].status = status
            return
        target = self.broker.targets[path]
        target.status = status
        if target.queue is not None:
            target.queue.status = status

    @staticmethod
    def _keep_sessions(sq: SubQueue, props: EntityProperties, name: str) -> None:
        if sq.props.requires_session != props.requires_session:
            raise AdminError(400, f"RequiresSession cannot be changed on the existing entity '{name}'.")

    def _check_forward(self, props: EntityProperties, name: str) -> None:
        if props.forward_to is None:
            return
        if props.forward_to.lower() == name.lower():
            raise AdminError(400, f"'{name}' cannot forward to itself.")
        if props.forward_to.lower() not in self.broker.targets:
            raise AdminError(400, f"ForwardTo: '{props.forward_to}' is not a queue or topic of this namespace.")

    def _delete(self, kind: str, path: str, *, record: bool = True) -> None:
        store = self.broker.store
        if kind in (QUEUE, TOPIC):
            target = self.broker.targets.get(path)
            if target is not None:
                for sq, _sub in target.subscriptions:
                    self._forget(sq.path, record)
                self.broker.remove_target(target)
        elif kind == SUBSCRIPTION:
            found = self._find_subscription(path)
            if found is not None:
                self._forget(found[1].path, record)
                self.broker.remove_subscription(*found)
        elif kind == RULE:
            sub_path, _, rule = path.partition("/rules/")
            found = self._find_subscription(sub_path)
            if found is not None:
                rules = self._rules_of(*found)
                self.broker.set_rules(*found, tuple(r for r in rules if r.name.lower() != rule))
        self.meta.pop(path, None)
        if record:
            store.admin_entity(path, kind, None)

    def _find_subscription(self, sub_path: str) -> tuple[Target, SubQueue] | None:
        """The topic and subscription at ``topic/subscriptions/sub`` (lower case), if both exist."""
        topic_path, _, sub = sub_path.partition("/subscriptions/")
        topic = self.broker.targets.get(topic_path)
        sq = self._subscription_of(topic, sub) if topic is not None else None
        return None if topic is None or sq is None else (topic, sq)

    def _forget(self, sub_path: str, record: bool) -> None:
        """Drop what is kept about a subscription and its rules (their entity is going away)."""
        for path in [p for p in self.meta if p == sub_path or p.startswith(sub_path + "/rules/")]:
            del self.meta[path]
            if record:
                self.broker.store.forget_admin_entity(path)

    # ------------------------------------------------------------ subscriptions and rules

    def _topic(self, name: str) -> Target:
        target = self.broker.targets.get(name.lower())
        if target is None or not target.is_topic:
            raise AdminError(404, f"The messaging entity '{name}' was not found.")
        return target

    @staticmethod
    def _subscription_of(topic: Target, name: str) -> SubQueue | None:
        for sq, sub in topic.subscriptions:
            if sub.name.lower() == name.lower():
                return sq
        return None

    @staticmethod
    def _rules_of(topic: Target, sq: SubQueue) -> tuple[RuleConfig, ...]:
        for s, sub in topic.subscriptions:
            if s is sq:
                return sub.rules
        return ()

    def _name_of(self, target: Target) -> str:
        meta = self.meta.get(target.path)
        if meta is not None and meta.name:
            return meta.name
        if target.queue is not None:
            return target.queue.name
        for sq, _sub in target.subscriptions:
            return sq.name.split("/Subscriptions/")[0]
        return target.path

    def _subscription(self, request: Request, topic_name: str, name: str) -> Response:
        topic = self._topic(topic_name)
        sq = self._subscription_of(topic, name)
        path = f"{topic.path}/subscriptions/{name.lower()}"
        what = f"The subscription '{name}' of '{topic_name}'"
        if request.method == "GET":
            return Response(200, self._subscription_entry(request.base, topic, _found(sq, what)))
        if request.method == "DELETE":
            _found(sq, what)
            self._delete(SUBSCRIPTION, path)
            return Response(200)
        parsed = _put_description(request, sq is not None, what, ("SubscriptionDescription",), "a subscription")
        doc = self._document(SUBSCRIPTION, name, atom.fields(parsed.element), path)
        doc["Topic"] = self._name_of(topic)
        created = sq is None
        default_rule: dict[str, Any] | None = None
        if created:
            element = atom.child(parsed.element, "DefaultRuleDescription")
            rule_name = DEFAULT_RULE_NAME
            if element is not None:
                rule_name = atom.fields(element).get("Name") or DEFAULT_RULE_NAME
            default_rule = atom.rule_document(rule_name, element) if element is not None else _true_rule()
            checked = {"Name": default_rule["Name"], "Properties": default_rule["Properties"]}
            rule_config(checked, f"subscription '{name}' default rule")  # refuse before creating anything
        self._apply(SUBSCRIPTION, path, doc)
        sq = self._subscription_of(topic, name)
        assert sq is not None
        if default_rule is not None:
            now = now_ms()
            self._apply_rule(
                f"{path}/rules/{default_rule['Name'].lower()}", {**default_rule, "Created": now, "Updated": now}
            )
        return Response(201 if created else 200, self._subscription_entry(request.base, topic, sq))

    def _rule(self, request: Request, topic_name: str, sub_name: str, name: str) -> Response:
        topic = self._topic(topic_name)
        sq = self._subscription_of(topic, sub_name)
        if sq is None:
            raise AdminError(404, f"The subscription '{sub_name}' of '{topic_name}' was not found.")
        rules = self._rules_of(topic, sq)
        existing = next((r for r in rules if r.name.lower() == name.lower()), None)
        path = f"{sq.path}/rules/{name.lower()}"
        what = f"The rule '{name}' of '{topic_name}/{sub_name}'"
        if request.method == "GET":
            return Response(200, self._rule_entry(request.base, sq, _found(existing, what)))
        if request.method == "DELETE":
            _found(existing, what)
            self._delete(RULE, path)
            return Response(200)
        parsed = _put_description(request, existing is not None, what, ("RuleDescription",), "a rule")
        old = self.meta.get(path)
        now = now_ms()
        doc = atom.rule_document(existing.name if existing is not None else name, parsed.element)
        doc.update(Created=old.created if old is not None else now, Updated=now)
        self._apply_rule(path, doc)
        rule = next(r for r in self._rules_of(topic, sq) if r.name.lower() == name.lower())
        return Response(201 if existing is None else 200, self._rule_entry(request.base, sq, rule))

    def _apply_rule(self, path: str, doc: dict[str, Any], *, record: bool = True) -> None:
        found = self._find_subscription(path.partition("/rules/")[0])
        if found is None:
            raise AdminError(404, f"The subscription of rule '{path}' was not found.")
        topic, sq = found
        config_doc = {"Name": doc["Name"], "Properties": doc["Properties"]}
        rule = rule_config(config_doc, f"rule '{doc['Name']}'")
        rules = [r for r in self._rules_of(topic, sq) if r.name.lower() != rule.name.lower()]
        self.broker.set_rules(topic, sq, (*rules, rule))
        self.meta[path] = Meta(doc["Created"], doc["Updated"], {}, doc["Name"], dict(doc.get("Sql") or {}))
        if record:
            self.broker.store.admin_entity(path, RULE, json.dumps(doc))

    # ------------------------------------------------------------ listing

    def _page(self, request: Request, items: list[str], title: str) -> Response:
        skip = int(request.query.get("$skip", "0") or 0)
        top = int(request.query.get("$top", "100") or 100)
        page = items[skip : skip + top]
        next_href = None
        if skip + top < len(items):
            next_href = f"{request.base}/{request.path}?$skip={skip + top}&$top={top}&api-version=2021-05"
        return Response(200, atom.feed(request.base, request.path, title, page, next_href, now_ms()))

    def _list_entities(self, request: Request, kind: str) -> Response:
        targets = sorted(
            (t for t in self.broker.targets.values() if (t.queue is not None) == (kind == QUEUE)), key=lambda t: t.path
        )
        entries = [self._entity_entry(request.base, t) for t in targets]
        return self._page(request, entries, "Queues" if kind == QUEUE else "Topics")

    def _list_subscriptions(self, request: Request, topic_name: str) -> Response:
        topic = self._topic(topic_name)
        entries = [self._subscription_entry(request.base, topic, sq) for sq, _sub in topic.subscriptions]
        return self._page(request, entries, "Subscriptions")

    def _list_rules(self, request: Request, topic_name: str, sub_name: str) -> Response:
        topic = self._topic(topic_name)
        sq = self._subscription_of(topic, sub_name)
        if sq is None:
            raise AdminError(404, f"The subscription '{sub_name}' of '{topic_name}' was not found.")
        entries = [self._rule_entry(request.base, sq, rule) for rule in self._rules_of(topic, sq)]
        return self._page(request, entries, "Rules")

    def _namespace_info(self, request: Request) -> Response:
        fields = (
            ("Alias", None), ("CreatedTime", atom.timestamp(self.started)), ("MessagingSKU", "Standard"),
            ("MessagingUnits", None), ("ModifiedTime", atom.timestamp(self.started)), ("Name", self.namespace),
            ("NamespaceType", "Messaging"),
        )  # fmt: skip
        content = atom.description("NamespaceInfo", fields)
        return Response(200, atom.entry(request.base, "$namespaceinfo", self.namespace, self.started, self.started,
                                        content))  # fmt: skip

    # ------------------------------------------------------------ rendering

    def _meta(self, path: str) -> Meta:
        meta = self.meta.get(path)
        if meta is None:
            meta = self.meta[path] = Meta(self.started, self.started)
        return meta

    def _entity_entry(self, base: str, target: Target) -> str:
        meta = self._meta(target.path)
        props = target.props
        name = self._name_of(target)
        if target.queue is not None:
            sq = target.queue
            active, scheduled, dead, size, accessed = _counts(sq)
            extra = {**_EXTRA[QUEUE], **meta.extra}
            fields: list[tuple[str, Any]] = [
                ("LockDuration", iso_duration(props.lock_duration)),
                ("MaxSizeInMegabytes", extra["MaxSizeInMegabytes"]),
                ("RequiresDuplicateDetection", props.requires_duplicate_detection),
                ("RequiresSession", props.requires_session),
                ("DefaultMessageTimeToLive", _ttl(props)),
                ("DeadLetteringOnMessageExpiration", props.dead_lettering_on_expiration),
                ("DuplicateDetectionHistoryTimeWindow", iso_duration(props.duplicate_detection_window)),
                ("MaxDeliveryCount", props.max_delivery_count),
                ("EnableBatchedOperations", extra["EnableBatchedOperations"]),
                ("SizeInBytes", size),
                ("MessageCount", active + scheduled + dead),
                ("IsAnonymousAccessible", extra["IsAnonymousAccessible"]),
                ("AuthorizationRules", atom.Raw("")),
                ("Status", extra["Status"]),
                ("ForwardTo", _forward(base, props.forward_to)),
                ("UserMetadata", extra["UserMetadata"]),
                *_times(meta, accessed),
                ("SupportOrdering", extra["SupportOrdering"]),
                ("CountDetails", atom.count_details(active, dead, scheduled)),
                ("AutoDeleteOnIdle", extra["AutoDeleteOnIdle"]),
                ("EnablePartitioning", extra["EnablePartitioning"]),
                ("EntityAvailabilityStatus", extra["EntityAvailabilityStatus"]),
                ("ForwardDeadLetteredMessagesTo", _forward(base, extra["ForwardDeadLetteredMessagesTo"])),
                ("EnableExpress", extra["EnableExpress"]),
                ("MaxMessageSizeInKilobytes", extra["MaxMessageSizeInKilobytes"]),
            ]
            content = atom.description("QueueDescription", fields)
        else:
            extra = {**_EXTRA[TOPIC], **meta.extra}
            size = sum(_size(m) for m in target.scheduled.values())
            accessed = max((m.enqueued for m in target.scheduled.values()), default=0)
            for sq, _sub in target.subscriptions:
                *_, sub_size, sub_accessed = _counts(sq)
                size, accessed = size + sub_size, max(accessed, sub_accessed)
            sql = sum(isinstance(r.filter, SqlFilter) for _sq, sub in target.subscriptions for r in sub.rules)
            correlation = sum(
                isinstance(r.filter, CorrelationFilter) for _sq, sub in target.subscriptions for r in sub.rules
            )
            fields = [
                ("DefaultMessageTimeToLive", _ttl(props)),
                ("MaxSizeInMegabytes", extra["MaxSizeInMegabytes"]),
                ("RequiresDuplicateDetection", props.requires_duplicate_detection),
                ("DuplicateDetectionHistoryTimeWindow", iso_duration(props.duplicate_detection_window)),
                ("EnableBatchedOperations", extra["EnableBatchedOperations"]),
                ("SizeInBytes", size),
                ("FilteringMessagesBeforePublishing", extra["FilteringMessagesBeforePublishing"]),
                ("IsAnonymousAccessible", extra["IsAnonymousAccessible"]),
                ("AuthorizationRules", atom.Raw("")),
                ("Status", extra["Status"]),
                *_times(meta, accessed),
                ("SupportOrdering", extra["SupportOrdering"]),
                ("CountDetails", atom.count_details(0, 0, len(target.scheduled))),
                ("SubscriptionCount", len(target.subscriptions)),
                ("SqlFilterCount", sql),
                ("CorrelationFilterCount", correlation),
                ("AutoDeleteOnIdle", extra["AutoDeleteOnIdle"]),
                ("EnablePartitioning", extra["EnablePartitioning"]),
                ("EntityAvailabilityStatus", extra["EntityAvailabilityStatus"]),
                ("EnableSubscriptionPartitioning", extra["EnableSubscriptionPartitioning"]),
                ("EnableExpress", extra["EnableExpress"]),
                ("UserMetadata", extra["UserMetadata"]),
                ("MaxMessageSizeInKilobytes", extra["MaxMessageSizeInKilobytes"]),
            ]
            content = atom.description("TopicDescription", fields)
        return atom.entry(base, name, name, meta.created, meta.updated, content)

    def _subscription_entry(self, base: str, topic: Target, sq: SubQueue) -> str:
        meta = self._meta(sq.path)
        extra = {**_EXTRA[SUBSCRIPTION], **meta.extra}
        props = sq.props
        active, scheduled, dead, _size, accessed = _counts(sq)
        name = sq.name.split("/Subscriptions/")[-1]
        fields: list[tuple[str, Any]] = [
            ("LockDuration", iso_duration(props.lock_duration)),
            ("RequiresSession", props.requires_session),
            ("DefaultMessageTimeToLive", _ttl(props)),
            ("DeadLetteringOnMessageExpiration", props.dead_lettering_on_expiration),
            ("DeadLetteringOnFilterEvaluationExceptions", extra["DeadLetteringOnFilterEvaluationExceptions"]),
            ("MessageCount", active + scheduled + dead),
            ("MaxDeliveryCount", props.max_delivery_count),
            ("EnableBatchedOperations", extra["EnableBatchedOperations"]),
            ("Status", extra["Status"]),
            ("ForwardTo", _forward(base, props.forward_to)),
            *_times(meta, accessed),
            ("CountDetails", atom.count_details(active, dead, scheduled)),
            ("UserMetadata", extra["UserMetadata"]),
            ("ForwardDeadLetteredMessagesTo", _forward(base, extra["ForwardDeadLetteredMessagesTo"])),
            ("AutoDeleteOnIdle", extra["AutoDeleteOnIdle"]),
            ("EntityAvailabilityStatus", extra["EntityAvailabilityStatus"]),
        ]
        content = atom.description("SubscriptionDescription", fields)
        href = f"{self._name_of(topic)}/subscriptions/{name}"
        return atom.entry(base, href, name, meta.created, meta.updated, content)

    def _rule_entry(self, base: str, sq: SubQueue, rule: RuleConfig) -> str:
        meta = self._meta(f"{sq.path}/rules/{rule.name.lower()}")
        content = atom.description("RuleDescription", _rule_fields(rule, meta))
        href = f"{sq.name.replace('/Subscriptions/', '/subscriptions/')}/rules/{rule.name}"
        return atom.entry(base, href, rule.name, meta.created, meta.updated, content)


# ------------------------------------------------------------------------------------------------ helpers


def _found(entity: _Entity | None, what: str) -> _Entity:
    """``entity``, or a 404 saying ``what`` (e.g. "The rule 'r' of 't/s'") was not found."""
    if entity is None:
        raise AdminError(404, f"{what} was not found.")
    return entity


def _put_description(
    request: Request, exists: bool, what: str, kinds: tuple[str, ...], at: str
) -> atom.ParsedDescription:
    """The description a PUT at an entity's address carries, after the checks every entity route makes.

    Only GET, DELETE and PUT are allowed; the body must describe one of ``kinds``; a PUT without If-Match
    creates ``what`` (409 if it exists), one with If-Match updates it (404 if it does not).
    """
    if request.method != "PUT":
        raise AdminError(405, f"{request.method} is not allowed here.")
    parsed = atom.parse_description(request.body)
    if parsed.kind not in kinds:
        raise AdminError(400, f"A {parsed.kind} cannot be put at {at}.")
    if request.if_match is None and exists:
        raise AdminError(409, f"{what} already exists.")
    if request.if_match is not None and not exists:
        raise AdminError(404, f"{what} was not found.")
    return parsed


def _true_rule() -> dict[str, Any]:
    return {"Name": DEFAULT_RULE_NAME, "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": "1=1"}}}


def _property(key: str, text: str) -> Any:
    """A description's element text in the config file's JSON shape (None: leave the default)."""
    text = text.strip()
    if key in _BOOLEAN:
        if text.lower() not in ("true", "false"):
            raise AdminError(400, f"{key}: expected true or false, got {text!r}")
        return text.lower() == "true"
    if key == "MaxDeliveryCount":
        try:
            return int(text)
        except ValueError as exc:
            raise AdminError(400, f"{key}: expected an integer, got {text!r}") from exc
    if key == "ForwardTo":
        return urlsplit(text).path.strip("/") if "://" in text else (text or None)
    if key == "DefaultMessageTimeToLive" and (text == atom.MAX_TIMESPAN or _days(text) >= _NEVER_MS // 86_400_000):
        return None
    return text


def _days(duration: str) -> int:
    match = re.match(r"^P(\d+)D", duration)
    return int(match.group(1)) if match else 0


def _ttl(props: EntityProperties) -> str:
    return atom.MAX_TIMESPAN if props.default_ttl is None else iso_duration(props.default_ttl)


def _forward(base: str, name: str | None) -> str | None:
    if not name:
        return None
    return name if "://" in name else f"{base}/{name}"


def _size(m: Any) -> int:
    return len(m.ann) + len(m.props) + len(m.app) + len(m.tail)


def _counts(sq: SubQueue) -> tuple[int, int, int, int, int]:
    """(active incl. deferred, scheduled, dead-lettered, bytes, last enqueued ms) of a queue or subscription."""
    active = scheduled = size = accessed = 0
    for m in sq.messages.values():
        if m.state == SCHEDULED:
            scheduled += 1
        else:  # active or deferred
            active += 1
        size += _size(m)
        accessed = max(accessed, m.enqueued)
    dead = 0
    if sq.dlq is not None:
        dead = len(sq.dlq.messages)
        for m in sq.dlq.messages.values():
            size += _size(m)
            accessed = max(accessed, m.enqueued)
    return active, scheduled, dead, size, accessed


def _times(meta: Meta, accessed: int) -> Iterable[tuple[str, str]]:
    return (
        ("CreatedAt", atom.timestamp(meta.created)),
        ("UpdatedAt", atom.timestamp(meta.updated)),
        ("AccessedAt", atom.timestamp(max(accessed, meta.updated))),
    )


def _rule_fields(rule: RuleConfig, meta: Meta) -> list[tuple[str, Any]]:
    f = rule.filter
    expression = f.expression.replace(" ", "") if isinstance(f, SqlFilter) else None
    given_filter, given_action = meta.sql.get("filter"), meta.sql.get("action")
    if given_filter is not None:
        filter_xml = atom.rule_filter_xml(
            "SqlFilter",
            [
                ("SqlExpression", given_filter["expression"]),
                ("CompatibilityLevel", 20),
                ("Parameters", atom.key_values(given_filter["parameters"])),
            ],
        )
    elif isinstance(f, TrueFilter) or expression == "1=1":
        filter_xml = atom.rule_filter_xml("TrueFilter", [("SqlExpression", "1=1"), ("CompatibilityLevel", 20)])
    elif isinstance(f, FalseFilter) or expression == "1=0":
        filter_xml = atom.rule_filter_xml("FalseFilter", [("SqlExpression", "1=0"), ("CompatibilityLevel", 20)])
    elif isinstance(f, SqlFilter):
        filter_xml = atom.rule_filter_xml("SqlFilter", [("SqlExpression", f.expression), ("CompatibilityLevel", 20)])
    elif isinstance(f, CorrelationFilter):
        system = f.system_properties
        items: list[tuple[str, Any]] = [(key, system.get(key)) for key in atom.CORRELATION_FIELDS]
        items.append(("Properties", atom.key_values(f.properties)))
        filter_xml = atom.rule_filter_xml("CorrelationFilter", items)
    else:
        raise AdminError(500, f"rule {rule.name!r} has a filter the API cannot show")
    if given_action is not None:
        action_xml = atom.rule_action_xml(given_action["expression"], given_action["parameters"])
    else:
        action_xml = atom.rule_action_xml(getattr(rule.action, "expression", None))
    return [
        ("Filter", atom.Verbatim(filter_xml)),
        ("Action", atom.Verbatim(action_xml)),
        ("CreatedAt", atom.timestamp(meta.created)),
        ("Name", rule.name),
    ]
