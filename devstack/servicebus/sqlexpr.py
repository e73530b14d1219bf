"""Value semantics and compiled evaluators of the SQL language of Service Bus subscription rules.

The parser (:mod:`.sqlparser`) builds expressions from the closures here; each takes the ``(system, user)``
property mappings of a message, so evaluating a rule per message does no parsing and no ``eval``.

Semantics (documented choices where the service's docs are silent):

- Truth is three-valued: a condition evaluates to ``True``, ``False`` or ``None`` (unknown). A property that is
  missing, or holds null, is unknown; comparisons, arithmetic and LIKE with an unknown operand are unknown; AND, OR
  and NOT follow the SQL truth tables; ``IS NULL`` and ``EXISTS`` are never unknown.
- User property names are matched exactly first, then case-insensitively (the docs say property names are
  case-insensitive). ``sys.`` names are checked when the expression is compiled, so a typo is a syntax error.
- Values of different kinds (booleans, numbers, strings, others by type) are never equal: ``=`` gives false,
  ``<>`` true, ordering unknown. Integers and floats are both numbers. String comparison and LIKE are ordinal
  (case-sensitive). Integer ``/`` and ``%`` truncate toward zero as in C#; division by zero is unknown.
"""

from __future__ import annotations

import math
import operator
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

Props = Mapping[str, Any]
Evaluator = Callable[[Props, Props], Any]

# .NET names of the broker's system properties; sys.<name> is matched case-insensitively against these.
SYSTEM_PROPERTIES: Final = (
    "MessageId",
    "CorrelationId",
    "Label",
    "To",
    "ReplyTo",
    "SessionId",
    "ReplyToSessionId",
    "ContentType",
    "DeliveryCount",
    "SequenceNumber",
    "EnqueuedTimeUtc",
    "Size",
    "TimeToLive",
    "ScheduledEnqueueTimeUtc",
    "ExpiresAtUtc",
    "LockedUntilUtc",
    "LockToken",
    "EnqueuedSequenceNumber",
    "PartitionKey",
    "ViaPartitionKey",
    "DeadLetterSource",
    "State",
)
_SYSTEM_BY_LOWER: Final = {name.lower(): name for name in SYSTEM_PROPERTIES} | {"subject": "Label"}


def system_property_name(name: str) -> str | None:
    """The canonical .NET name of a system property (``Subject`` is ``Label``), or None if there is none."""
    return _SYSTEM_BY_LOWER.get(name.lower())


# Kinds decide which values can be compared: values of different kinds are never equal.
_KINDS: Final[dict[type, str]] = {bool: "bool", int: "number", float: "number", str: "string"}


def value_kind(value: Any) -> Any:
    """The comparison kind of a non-null value: 'bool', 'number', 'string', or the value's type."""
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value)


def values_equal(a: Any, b: Any) -> bool:
    """Equality of two non-null values with the kind rule above (``True`` is not ``1``)."""
    return bool(a == b) and value_kind(a) == value_kind(b)


def lookup_user(user: Props, name: str, lowered: str) -> Any:
    """A user property by exact name, else case-insensitively; None when absent."""
    value = user.get(name)
    if value is not None or name in user:
        return value
    for key, candidate in user.items():
        if isinstance(key, str) and key.lower() == lowered:
            return candidate
    return None


def find_user_key(user: Props, name: str) -> str | None:
    """The key under which ``name`` is stored (exact, else case-insensitive match), or None."""
    if name in user:
        return name
    lowered = name.lower()
    for key in user:
        if isinstance(key, str) and key.lower() == lowered:
            return key
    return None


@dataclass(frozen=True, slots=True)
class Node:
    """A compiled (sub)expression."""

    fn: Evaluator
    pos: int
    is_condition: bool = False  # evaluates to three-valued truth rather than to a value
    const: bool = False
    value: Any = None
    prop: tuple[str, str] | None = None  # ("sys" | "user", name) for a plain property reference


_EMPTY: Final[Props] = {}


def const_node(value: Any, pos: int, is_condition: bool = False) -> Node:
    return Node(lambda _s, _u: value, pos, is_condition, const=True, value=value)


def derived_node(fn: Evaluator, pos: int, children: tuple[Node, ...], is_condition: bool) -> Node:
    """A node computed from children only; folded to a constant when every child is one."""
    if all(child.const for child in children):
        return const_node(fn(_EMPTY, _EMPTY), pos, is_condition)
    return Node(fn, pos, is_condition)


def system_getter(name: str) -> Evaluator:
    return lambda s, _u: s.get(name)


def user_getter(name: str) -> Evaluator:
    lowered = name.lower()

    def get(_s: Props, u: Props) -> Any:
        value = u.get(name)
        return value if value is not None else lookup_user(u, name, lowered)

    return get


def exists(scope: str, name: str) -> Evaluator:
    if scope == "sys":
        return lambda s, _u: s.get(name) is not None
    return lambda _s, u: name in u or find_user_key(u, name) is not None


def is_null(get: Evaluator) -> Evaluator:
    return lambda s, u: get(s, u) is None


def negation(fn: Evaluator) -> Evaluator:
    def evaluate(s: Props, u: Props) -> bool | None:
        value = fn(s, u)
        return None if value is None else not value

    return evaluate


def conjunction(left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate(s: Props, u: Props) -> bool | None:
        a = left(s, u)
        if a is False:
            return False
        b = right(s, u)
        if b is False:
            return False
        return True if a is True and b is True else None

    return evaluate


def disjunction(left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate(s: Props, u: Props) -> bool | None:
        a = left(s, u)
        if a is True:
            return True
        b = right(s, u)
        if b is True:
            return True
        return False if a is False and b is False else None

    return evaluate


COMPARATORS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# Result of comparing values of different kinds.
_KIND_MISMATCH: Final[dict[str, bool | None]] = {"=": False, "<>": True, "!=": True}


def comparison(op: str, left: Node, right: Node) -> Evaluator:
    compare = COMPARATORS[op]
    mismatch = _KIND_MISMATCH.get(op)
    if op == "=" and right.const and right.value is not None:
        # The common `prop = 'literal'` shape: one lookup, one ==, the kind check only on a hit.
        wanted, wanted_kind, get = right.value, value_kind(right.value), left.fn

        def equals_constant(s: Props, u: Props) -> bool | None:
            value = get(s, u)
            if value is None:
                return None
            return value == wanted and value_kind(value) == wanted_kind

        return equals_constant
    lfn, rfn = left.fn, right.fn

    def evaluate(s: Props, u: Props) -> bool | None:
        a = lfn(s, u)
        if a is None:
            return None
        b = rfn(s, u)
        if b is None:
            return None
        if value_kind(a) != value_kind(b):
            return mismatch
        try:
            return bool(compare(a, b))
        except TypeError:
            return None

    return evaluate


def _truncating_div(a: Any, b: Any) -> Any:
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        quotient = abs(a) // abs(b)
        return quotient if (a < 0) == (b < 0) else -quotient
    return a / b


def _truncating_mod(a: Any, b: Any) -> Any:
    if b == 0:
        return None
    if isinstance(a, int) and isinstance(b, int):
        remainder = abs(a) % abs(b)
        return remainder if a >= 0 else -remainder
    return math.fmod(a, b)


_ARITHMETIC: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _truncating_div,
    "%": _truncating_mod,
}


def arithmetic(op: str, left: Evaluator, right: Evaluator) -> Evaluator:
    apply = _ARITHMETIC[op]
    concatenates = op == "+"

    def evaluate(s: Props, u: Props) -> Any:
        a = left(s, u)
        if a is None:
            return None
        b = right(s, u)
        if b is None:
            return None
        kind_a, kind_b = value_kind(a), value_kind(b)
        if kind_a == "number" and kind_b == "number":
            return apply(a, b)
        if concatenates and kind_a == "string" and kind_b == "string":
            return a + b
        return None

    return evaluate


def sign(op: str, fn: Evaluator) -> Evaluator:
    """Unary ``+`` or ``-``: numbers only, anything else is unknown."""
    negate = op == "-"

    def evaluate(s: Props, u: Props) -> Any:
        value = fn(s, u)
        if value is None or value_kind(value) != "number":
            return None
        return -value if negate else value

    return evaluate


def membership(get: Evaluator, items: list[Node]) -> Evaluator:
    """``x IN (...)``: true on a match; else unknown if an item was null (as in SQL), else false."""
    if all(item.const for item in items):
        try:
            keys = frozenset((value_kind(i.value), i.value) for i in items if i.value is not None)
        except TypeError:  # an unhashable constant cannot happen today; fall through to the general form
            keys = None
        if keys is not None:
            miss = None if any(item.value is None for item in items) else False

            def evaluate_constants(s: Props, u: Props) -> bool | None:
                value = get(s, u)
                if value is None:
                    return None
                try:
                    return True if (value_kind(value), value) in keys else miss
                except TypeError:  # an unhashable value (an AMQP list or map) equals no constant
                    return miss

            return evaluate_constants
    fns = [item.fn for item in items]

    def evaluate(s: Props, u: Props) -> bool | None:
        value = get(s, u)
        if value is None:
            return None
        saw_null = False
        for fn in fns:
            candidate = fn(s, u)
            if candidate is None:
                saw_null = True
            elif values_equal(value, candidate):
                return True
        return None if saw_null else False

    return evaluate


def like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    """The regular expression (for ``fullmatch``) of a LIKE pattern; ValueError on a dangling escape."""
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if escape is not None and char == escape:
            index += 1
            if index == len(pattern):
                raise ValueError("the LIKE pattern ends with its escape character")
            parts.append(re.escape(pattern[index]))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


def like_matcher(pattern: str, escape: str | None) -> Callable[[str], bool]:
    """A test for a constant LIKE pattern: str methods for the simple shapes, else a compiled regex."""
    if escape is None and "_" not in pattern:
        inner = pattern.strip("%")
        if "%" not in inner:
            leading, trailing = pattern.startswith("%"), pattern.endswith("%")
            if leading and trailing:
                return lambda value: inner in value
            if trailing:
                return lambda value: value.startswith(inner)
            if leading:
                return lambda value: value.endswith(inner)
            return lambda value: value == inner
    regex = like_regex(pattern, escape)
    return lambda value: regex.fullmatch(value) is not None


def like_constant(get: Evaluator, test: Callable[[str], bool]) -> Evaluator:
    def evaluate(s: Props, u: Props) -> bool | None:
        value = get(s, u)
        return test(value) if isinstance(value, str) else None

    return evaluate


@lru_cache(maxsize=256)
def _cached_like_regex(pattern: str, escape: str | None) -> re.Pattern[str] | None:
    try:
        return like_regex(pattern, escape)
    except ValueError:
        return None


def like_dynamic(get: Evaluator, pattern_fn: Evaluator, escape_fn: Evaluator | None) -> Evaluator:
    """LIKE with a pattern or escape computed per message; anything malformed is unknown."""

    def evaluate(s: Props, u: Props) -> bool | None:
        value = get(s, u)
        pattern = pattern_fn(s, u)
        escape = escape_fn(s, u) if escape_fn is not None else None
        if not isinstance(value, str) or not isinstance(pattern, str):
            return None
        if escape_fn is not None and not (isinstance(escape, str) and len(escape) == 1):
            return None
        regex = _cached_like_regex(pattern, escape)
        return None if regex is None else regex.fullmatch(value) is not None

    return evaluate


def newid() -> Evaluator:
    return lambda _s, _u: uuid.uuid4()


def property_by_name(name_fn: Evaluator) -> Evaluator:
    """``property(name)``: the property named by a string, with an optional ``sys.``/``user.`` scope."""

    def evaluate(s: Props, u: Props) -> Any:
        name = name_fn(s, u)
        if not isinstance(name, str):
            return None
        scope, dot, rest = name.partition(".")
        if dot and scope.lower() == "sys":
            canonical = system_property_name(rest)
            return s.get(canonical) if canonical is not None else None
        if dot and scope.lower() == "user":
            name = rest
        return lookup_user(u, name, name.lower())

    return evaluate
