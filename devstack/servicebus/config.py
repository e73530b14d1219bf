"""Entities of the Service Bus emulator, loaded from a file in the format of Microsoft's emulator ``Config.json``.

The file holds ``UserConfig.Namespaces[]``, each with ``Queues[]`` and ``Topics[]``; topics hold
``Subscriptions[]``, subscriptions hold ``Rules[]`` with a Correlation or Sql filter and an optional Sql action.
Only the first namespace is served (a warning is logged when there are more).

Choices, where this emulator differs from Microsoft's container or adds checks:

- Defaults are the cloud service's, not the container's: LockDuration PT1M, MaxDeliveryCount 10, no default
  time to live, duplicate detection window PT10M, sessions, dead-lettering and duplicate detection off.
- Every key of Microsoft's format is known. The ones this emulator does not act on (``Logging``,
  ``ForwardDeadLetteredMessagesTo``) are accepted and ignored; any other key is an error naming the closest known
  key, so a typo never silently falls back to a default. A property that exists but does not apply to the entity
  (``RequiresSession`` on a topic, duplicate detection on a subscription) is an error too.
- Ranges: LockDuration above 0 and at most PT5M; time to live above 0; duplicate detection window above 0 and at
  most P7D; MaxDeliveryCount from 1. Short locks are allowed so tests can watch locks expire.
- Durations are ISO-8601 ``PnYnMnWnDTnHnMnS`` (seconds may have a fraction); a year is 365 days, a month 30.
- ``FilterType`` is ``Correlation`` or ``Sql`` in any letter case; an empty ``Action.SqlExpression`` means no action.
- Names follow Microsoft's pattern, compare case-insensitively for duplicates, and ``ForwardTo`` must name another
  queue or topic of the namespace without forming a loop; an empty ``ForwardTo`` means none.

Every error is a ConfigError whose message starts with the path of the offending field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from .configvalues import (
    ConfigError,
    as_array,
    as_boolean,
    as_duration,
    as_integer,
    as_name,
    as_object,
    as_string,
    check_unique,
    iso_duration,
    item_objects,
    required,
    show,
)
from .filters import Action, CorrelationFilter, Filter, FilterSyntaxError, SqlAction, SqlFilter, TrueFilter

__all__ = [
    "DEFAULT_RULE_NAME",
    "ConfigError",
    "EntityProperties",
    "NamespaceConfig",
    "QueueConfig",
    "RuleConfig",
    "SubscriptionConfig",
    "TopicConfig",
    "entity_properties",
    "load_config",
    "parse_config",
    "rule_config",
]

logger = logging.getLogger(__name__)

DEFAULT_RULE_NAME: Final = "$Default"
MAX_LOCK_DURATION: Final = timedelta(minutes=5)
MAX_DUPLICATE_DETECTION_WINDOW: Final = timedelta(days=7)


@dataclass(frozen=True)
class EntityProperties:
    lock_duration: timedelta = timedelta(minutes=1)
    max_delivery_count: int = 10
    requires_session: bool = False
    default_ttl: timedelta | None = None  # None: messages live until consumed
    dead_lettering_on_expiration: bool = False
    requires_duplicate_detection: bool = False
    duplicate_detection_window: timedelta = timedelta(minutes=10)
    forward_to: str | None = None


@dataclass(frozen=True)
class RuleConfig:
    name: str
    filter: Filter
    action: Action | None = None


@dataclass(frozen=True)
class QueueConfig:
    name: str
    properties: EntityProperties = field(default_factory=EntityProperties)


@dataclass(frozen=True)
class SubscriptionConfig:
    name: str
    properties: EntityProperties = field(default_factory=EntityProperties)
    rules: tuple[RuleConfig, ...] = (RuleConfig(DEFAULT_RULE_NAME, TrueFilter()),)


@dataclass(frozen=True)
class TopicConfig:
    name: str
    properties: EntityProperties = field(default_factory=EntityProperties)
    subscriptions: tuple[SubscriptionConfig, ...] = ()


@dataclass(frozen=True)
class NamespaceConfig:
    name: str
    queues: tuple[QueueConfig, ...] = ()
    topics: tuple[TopicConfig, ...] = ()

    def queue(self, name: str) -> QueueConfig | None:
        """The queue called ``name`` (entity names are case-insensitive), or None."""
        return next((q for q in self.queues if q.name.lower() == name.lower()), None)

    def topic(self, name: str) -> TopicConfig | None:
        return next((t for t in self.topics if t.name.lower() == name.lower()), None)


def load_config(path: str | Path) -> NamespaceConfig:
    """The first namespace of the configuration file at ``path``; ConfigError if it is unreadable or invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read the file: {exc}") from exc
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except _DuplicateKeyError as exc:
        raise ConfigError(str(path), str(exc)) from exc
    return parse_config(document)


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def parse_config(document: Any) -> NamespaceConfig:
    """The first namespace of an already-decoded configuration document."""
    root = as_object(document, "(root)", {"UserConfig", "$schema"})
    user_config = as_object(required(root, "UserConfig", ""), "UserConfig", {"Namespaces", "Logging"})
    namespaces = as_array(required(user_config, "Namespaces", "UserConfig"), "UserConfig.Namespaces")
    if not namespaces:
        raise ConfigError("UserConfig.Namespaces", "at least one namespace is required")
    if len(namespaces) > 1:
        logger.warning("The configuration has %d namespaces; the emulator serves only the first", len(namespaces))
    return _namespace(namespaces[0], "UserConfig.Namespaces[0]")


# ------------------------------------------------------------------------------------------------ structure

_QUEUE, _TOPIC, _SUBSCRIPTION = "queue", "topic", "subscription"


def _namespace(value: Any, path: str) -> NamespaceConfig:
    data = as_object(value, path, {"Name", "Queues", "Topics"})
    name = as_name(required(data, "Name", path), f"{path}.Name")
    queues = tuple(
        QueueConfig(as_name(required(q, "Name", p), f"{p}.Name"), _properties(q, p, _QUEUE))
        for p, q in item_objects(data, "Queues", path, {"Name", "Properties"})
    )
    topics = tuple(_topic(t, p) for p, t in item_objects(data, "Topics", path, {"Name", "Properties", "Subscriptions"}))
    entities = [(q.name, f"{path}.Queues[{i}]") for i, q in enumerate(queues)]
    entities += [(t.name, f"{path}.Topics[{i}]") for i, t in enumerate(topics)]
    check_unique([(entity, f"{entity_path}.Name") for entity, entity_path in entities])  # queues and topics share names
    return _resolve_forwarding(NamespaceConfig(name, queues, topics), dict(entities))


def _topic(data: Mapping[str, Any], path: str) -> TopicConfig:
    name = as_name(required(data, "Name", path), f"{path}.Name")
    keys = {"Name", "Properties", "Rules"}
    subscriptions = tuple(_subscription(s, p) for p, s in item_objects(data, "Subscriptions", path, keys))
    check_unique([(s.name, f"{path}.Subscriptions[{i}].Name") for i, s in enumerate(subscriptions)])
    return TopicConfig(name, _properties(data, path, _TOPIC), subscriptions)


def _subscription(data: Mapping[str, Any], path: str) -> SubscriptionConfig:
    name = as_name(required(data, "Name", path), f"{path}.Name", allow_slash=False)
    rules = tuple(_rule(r, p) for p, r in item_objects(data, "Rules", path, {"Name", "Properties"}))
    check_unique([(r.name, f"{path}.Rules[{i}].Name") for i, r in enumerate(rules)])
    properties = _properties(data, path, _SUBSCRIPTION)
    if not rules:
        return SubscriptionConfig(name, properties)
    return SubscriptionConfig(name, properties, rules)


def _rule(data: Mapping[str, Any], path: str) -> RuleConfig:
    raw_name = required(data, "Name", path)
    name = raw_name if raw_name == DEFAULT_RULE_NAME else as_name(raw_name, f"{path}.Name", allow_slash=False)
    props_path = f"{path}.Properties"
    props = as_object(
        required(data, "Properties", path), props_path, {"FilterType", "CorrelationFilter", "SqlFilter", "Action"}
    )
    filter_type = as_string(required(props, "FilterType", props_path), f"{props_path}.FilterType")
    kinds = {"correlation": "Correlation", "sql": "Sql"}
    kind = kinds.get(filter_type.lower())
    if kind is None:
        raise ConfigError(
            f"{props_path}.FilterType", f"{filter_type!r} is not a filter type; use 'Correlation' or 'Sql'"
        )
    other = "SqlFilter" if kind == "Correlation" else "CorrelationFilter"
    if other in props:
        raise ConfigError(f"{props_path}.{other}", f"given, but FilterType is {kind!r}")
    rule_filter: Filter
    if kind == "Sql":
        sql_path = f"{props_path}.SqlFilter"
        sql = as_object(required(props, "SqlFilter", props_path), sql_path, {"SqlExpression"})
        expression = as_string(required(sql, "SqlExpression", sql_path), f"{sql_path}.SqlExpression")
        rule_filter = _compiled(SqlFilter, expression, f"{sql_path}.SqlExpression")
    else:
        rule_filter = _correlation(required(props, "CorrelationFilter", props_path), f"{props_path}.CorrelationFilter")
    action: Action | None = None
    if "Action" in props:
        action_data = as_object(props["Action"], f"{props_path}.Action", {"SqlExpression"})
        expression = as_string(action_data.get("SqlExpression", ""), f"{props_path}.Action.SqlExpression")
        if expression.strip():  # an empty action is no action
            action = _compiled(SqlAction, expression, f"{props_path}.Action.SqlExpression")
    return RuleConfig(name, rule_filter, action)


_CORRELATION_KEYS: Final = {
    "ContentType": "content_type",
    "CorrelationId": "correlation_id",
    "Label": "label",
    "MessageId": "message_id",
    "ReplyTo": "reply_to",
    "ReplyToSessionId": "reply_to_session_id",
    "SessionId": "session_id",
    "To": "to",
}


def _correlation(value: Any, path: str) -> CorrelationFilter:
    data = as_object(value, path, {*_CORRELATION_KEYS, "Properties"})
    arguments: dict[str, Any] = {
        argument: as_string(data[key], f"{path}.{key}") for key, argument in _CORRELATION_KEYS.items() if key in data
    }
    if "Properties" in data:
        properties = as_object(data["Properties"], f"{path}.Properties", None)
        if not properties:
            raise ConfigError(f"{path}.Properties", "is empty; give at least one property or leave it out")
        for key, item in properties.items():
            if not isinstance(item, str | int | float):
                raise ConfigError(f"{path}.Properties.{key}", f"expected a string, number or boolean, got {show(item)}")
        arguments["properties"] = properties
    if not arguments:
        raise ConfigError(path, "has no condition; give at least one system property or Properties")
    return CorrelationFilter(**arguments)


_T = TypeVar("_T")


def _compiled(build: Callable[[str], _T], expression: str, path: str) -> _T:
    try:
        return build(expression)
    except FilterSyntaxError as exc:
        raise ConfigError(path, f"{exc} in {expression!r}") from exc


# ------------------------------------------------------------------------------------------------ entity properties

_RECEIVERS: Final = frozenset({_QUEUE, _SUBSCRIPTION})
_SENDERS: Final = frozenset({_QUEUE, _TOPIC})


def _positive(value: timedelta, path: str, maximum: timedelta | None = None) -> timedelta:
    if value <= timedelta(0):
        raise ConfigError(path, "must be longer than zero")
    if maximum is not None and value > maximum:
        raise ConfigError(path, f"must be at most {iso_duration(maximum)}")
    return value


@dataclass(frozen=True)
class _Property:
    key: str  # JSON name
    attribute: str  # EntityProperties field
    parse: Callable[[Any, str], Any]
    applies_to: frozenset[str]


_PROPERTIES: Final = (
    _Property(
        "LockDuration", "lock_duration", lambda v, p: _positive(as_duration(v, p), p, MAX_LOCK_DURATION), _RECEIVERS
    ),
    _Property("MaxDeliveryCount", "max_delivery_count", lambda v, p: as_integer(v, p, minimum=1), _RECEIVERS),
    _Property("RequiresSession", "requires_session", lambda v, p: as_boolean(v, p), _RECEIVERS),
    _Property(
        "DefaultMessageTimeToLive",
        "default_ttl",
        lambda v, p: _positive(as_duration(v, p), p),
        frozenset({_QUEUE, _TOPIC, _SUBSCRIPTION}),
    ),
    _Property(
        "DeadLetteringOnMessageExpiration", "dead_lettering_on_expiration", lambda v, p: as_boolean(v, p), _RECEIVERS
    ),
    _Property("RequiresDuplicateDetection", "requires_duplicate_detection", lambda v, p: as_boolean(v, p), _SENDERS),
    _Property(
        "DuplicateDetectionHistoryTimeWindow",
        "duplicate_detection_window",
        lambda v, p: _positive(as_duration(v, p), p, MAX_DUPLICATE_DETECTION_WINDOW),
        _SENDERS,
    ),
    _Property("ForwardTo", "forward_to", lambda v, p: as_string(v, p) or None, _RECEIVERS),
)
# Keys of Microsoft's format that this emulator accepts and does not act on.
_IGNORED_PROPERTIES: Final = {"ForwardDeadLetteredMessagesTo": _RECEIVERS}


def _properties(entity: Mapping[str, Any], entity_path: str, kind: str) -> EntityProperties:
    path = f"{entity_path}.Properties"
    known = {p.key for p in _PROPERTIES} | set(_IGNORED_PROPERTIES)
    data = as_object(entity.get("Properties", {}), path, known)
    values: dict[str, Any] = {}
    for prop in _PROPERTIES:
        if prop.key not in data:
            continue
        value = prop.parse(data[prop.key], f"{path}.{prop.key}")
        if kind not in prop.applies_to:
            raise ConfigError(
                f"{path}.{prop.key}", f"does not apply to a {kind}; it is a {_kinds(prop.applies_to)} property"
            )
        values[prop.attribute] = value
    for key, applies_to in _IGNORED_PROPERTIES.items():
        if key in data:
            target = as_string(data[key], f"{path}.{key}")
            if kind not in applies_to:
                raise ConfigError(f"{path}.{key}", f"does not apply to a {kind}")
            if target:
                logger.info("%s.%s is not emulated and is ignored", path, key)
    return EntityProperties(**values)


def entity_properties(properties: Mapping[str, Any], path: str, kind: str) -> EntityProperties:
    """``Properties`` of a queue, topic or subscription (``kind``) in the config file's shape, checked as there."""
    if kind not in (_QUEUE, _TOPIC, _SUBSCRIPTION):
        raise ValueError(f"unknown entity kind {kind!r}")
    return _properties({"Properties": dict(properties)}, path, kind)


def rule_config(document: Mapping[str, Any], path: str) -> RuleConfig:
    """One rule in the config file's shape (``{"Name", "Properties": {...}}``), checked as there."""
    return _rule(document, path)


def _kinds(kinds: Collection[str]) -> str:
    return " and ".join(sorted(kinds))


def _resolve_forwarding(namespace: NamespaceConfig, paths: Mapping[str, str]) -> NamespaceConfig:
    """Check ForwardTo targets (existing, not the entity itself, no loops) and spell them as the target is named."""
    names = {name.lower(): name for name in paths}
    edges: dict[str, dict[str, str]] = {name: {} for name in paths}  # source -> target -> path of the ForwardTo

    def resolve(source: str, props: EntityProperties, path: str) -> EntityProperties:
        if props.forward_to is None:
            return props
        target = names.get(props.forward_to.lower())
        if target is None:
            raise ConfigError(path, f"{props.forward_to!r} is not a queue or topic of this namespace")
        if target == source:
            raise ConfigError(path, "an entity cannot forward to itself")
        edges[source].setdefault(target, path)
        return replace(props, forward_to=target)

    queues = tuple(
        replace(q, properties=resolve(q.name, q.properties, f"{paths[q.name]}.Properties.ForwardTo"))
        for q in namespace.queues
    )
    topics = tuple(
        replace(
            t,
            subscriptions=tuple(
                replace(
                    s,
                    properties=resolve(
                        t.name, s.properties, f"{paths[t.name]}.Subscriptions[{i}].Properties.ForwardTo"
                    ),
                )
                for i, s in enumerate(t.subscriptions)
            ),
        )
        for t in namespace.topics
    )
    loop = _find_loop({source: set(targets) for source, targets in edges.items()})
    if loop:
        where = edges[loop[0]][loop[1 % len(loop)]]
        raise ConfigError(where, "forwarding loops back: " + " -> ".join([*loop, loop[0]]))
    return replace(namespace, queues=queues, topics=topics)


def _find_loop(edges: Mapping[str, set[str]]) -> list[str] | None:
    """Some cycle in the forwarding graph, as the list of its nodes, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                return trail[trail.index(target) :]
            if target not in state and (found := visit(target, trail)):
                return found
        trail.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [])):
            return found
    return None
