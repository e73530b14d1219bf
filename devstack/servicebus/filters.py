"""Subscription rule filters and actions of the Service Bus emulator.

A topic copies a message into each subscription that has a rule whose filter matches. Filters see two mappings:
``system`` with the broker's .NET-named properties (MessageId, CorrelationId, Label, To, ReplyTo, SessionId,
ReplyToSessionId, ContentType, and DeliveryCount, SequenceNumber, EnqueuedTimeUtc, Size when known) and ``user``
with the application properties. A rule's action returns the application properties the copy carries.

The SQL language and its semantics are described in :mod:`.sqlexpr` and :mod:`.sqlparser`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from .sqlexpr import find_user_key, value_kind
from .sqlparser import compile_action, compile_condition
from .sqltokens import FilterSyntaxError

__all__ = [
    "Action",
    "CorrelationFilter",
    "FalseFilter",
    "Filter",
    "FilterSyntaxError",
    "SqlAction",
    "SqlFilter",
    "TrueFilter",
]


class Filter(Protocol):
    def matches(self, system: Mapping[str, Any], user: Mapping[str, Any]) -> bool: ...


class Action(Protocol):
    def apply(self, system: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
        """The application properties after the action; the input mappings are left unchanged."""
        ...


class TrueFilter:
    """Matches every message (the filter of a subscription's ``$Default`` rule)."""

    def matches(self, system: Mapping[str, Any], user: Mapping[str, Any]) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrueFilter)

    def __hash__(self) -> int:
        return hash(TrueFilter)

    def __repr__(self) -> str:
        return "TrueFilter()"


class FalseFilter:
    """Matches no message."""

    def matches(self, system: Mapping[str, Any], user: Mapping[str, Any]) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FalseFilter)

    def __hash__(self) -> int:
        return hash(FalseFilter)

    def __repr__(self) -> str:
        return "FalseFilter()"


# Keyword argument -> .NET system property name.
_CORRELATION_FIELDS: Final = {
    "content_type": "ContentType",
    "correlation_id": "CorrelationId",
    "label": "Label",
    "message_id": "MessageId",
    "reply_to": "ReplyTo",
    "reply_to_session_id": "ReplyToSessionId",
    "session_id": "SessionId",
    "to": "To",
}


class CorrelationFilter:
    """Matches when every given system property and user property equals its value (names are exact).

    User property values compare by kind as in SQL filters: ``1`` matches ``1`` and ``1.0`` but not ``'1'`` or
    ``true``. At least one condition is required.
    """

    def __init__(
        self,
        *,
        content_type: str | None = None,
        correlation_id: str | None = None,
        label: str | None = None,
        message_id: str | None = None,
        reply_to: str | None = None,
        reply_to_session_id: str | None = None,
        session_id: str | None = None,
        to: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        given = {
            "content_type": content_type,
            "correlation_id": correlation_id,
            "label": label,
            "message_id": message_id,
            "reply_to": reply_to,
            "reply_to_session_id": reply_to_session_id,
            "session_id": session_id,
            "to": to,
        }
        self._system = tuple((_CORRELATION_FIELDS[key], value) for key, value in given.items() if value is not None)
        user = dict(properties or {})
        for name, value in user.items():
            if value is None or value_kind(value) not in ("bool", "number", "string"):
                raise ValueError(f"correlation property {name!r} must be a string, number or boolean, got {value!r}")
        self._user = tuple((name, value, value_kind(value)) for name, value in user.items())
        if not self._system and not self._user:
            raise ValueError("a correlation filter needs at least one system or user property to match")

    @property
    def system_properties(self) -> dict[str, Any]:
        return dict(self._system)

    @property
    def properties(self) -> dict[str, Any]:
        return {name: value for name, value, _ in self._user}

    def matches(self, system: Mapping[str, Any], user: Mapping[str, Any]) -> bool:
        for name, wanted in self._system:
            if system.get(name) != wanted:
                return False
        for name, wanted, kind in self._user:
            value = user.get(name)
            if value is None or value != wanted or value_kind(value) != kind:
                return False
        return True

    def _key(self) -> tuple[Any, ...]:
        return (self._system, tuple(sorted(self._user, key=lambda item: item[0])))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CorrelationFilter) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = [f"{key}={value!r}" for key, value in self._system]
        if self._user:
            fields.append(f"properties={self.properties!r}")
        return f"CorrelationFilter({', '.join(fields)})"


class SqlFilter:
    """A SQL filter expression, compiled once; FilterSyntaxError (with the column) if it does not parse."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._condition = compile_condition(expression).fn

    def matches(self, system: Mapping[str, Any], user: Mapping[str, Any]) -> bool:
        return self._condition(system, user) is True

    def evaluate(self, system: Mapping[str, Any], user: Mapping[str, Any]) -> bool | None:
        """The three-valued result: True, False or None (unknown)."""
        result: bool | None = self._condition(system, user)
        return result

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SqlFilter) and self.expression == other.expression

    def __hash__(self) -> int:
        return hash(("sql", self.expression))

    def __repr__(self) -> str:
        return f"SqlFilter({self.expression!r})"


class SqlAction:
    """A SQL rule action (``SET name = expr``, ``REMOVE name``; ``;`` between statements is optional).

    Statements run in order, each seeing the properties left by the previous one. Only user properties can be
    changed. A name that matches an existing property case-insensitively updates or removes that property.
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._steps = compile_action(expression)

    def apply(self, system: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(user)
        for step in self._steps:
            key = find_user_key(result, step.name)
            if step.value is None:
                if key is not None:
                    del result[key]
            else:
                result[key if key is not None else step.name] = step.value(system, result)
        return result

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SqlAction) and self.expression == other.expression

    def __hash__(self) -> int:
        return hash(("action", self.expression))

    def __repr__(self) -> str:
        return f"SqlAction({self.expression!r})"
