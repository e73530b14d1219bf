"""The ATOM/XML shapes of the Service Bus management REST API (api-version 2021-05), as the SDK's
generated `ServiceBusAdministrationClient` reads and writes them.

Rendering: `entry(...)` and `feed(...)` wrap a `QueueDescription`, `TopicDescription`,
`SubscriptionDescription` or `RuleDescription` (built by `description(...)`), `error(...)` is Azure's
`<Error><Code/><Detail/></Error>`. Parsing: `parse_description(body)` gives the description's kind and
its child elements (`Fields`), and `rule_document(...)` turns a `RuleDescription` into the rule shape of
`Config.json`, so runtime changes go through the same validation as the config file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

ATOM = "http://www.w3.org/2005/Atom"
SB = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
SB2011 = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
KINDS = ("QueueDescription", "TopicDescription", "SubscriptionDescription", "RuleDescription")
MAX_TIMESPAN = "P10675199DT2H48M5.4775807S"  # .NET TimeSpan.MaxValue: "never"


class AtomError(ValueError):
    """The request body is not an entity description we can read."""


def timestamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def elements(fields: Iterable[tuple[str, Any]]) -> str:
    """`<Name>value</Name>` for each field whose value is not None (values are escaped, raw XML passes)."""
    parts = []
    for name, value in fields:
        if value is None:
            continue
        if isinstance(value, Verbatim):
            parts.append(value.xml)
        elif isinstance(value, Raw):
            parts.append(f"<{name}>{value.xml}</{name}>")
        else:
            parts.append(f"<{name}>{_value(value)}</{name}>")
    return "".join(parts)


@dataclass(frozen=True)
class Raw:
    """Already-rendered XML content for `elements`."""

    xml: str


@dataclass(frozen=True)
class Verbatim:
    """A complete element (with its own attributes) for `elements`; the field name is not used."""

    xml: str


def count_details(active: int, dead_letter: int, scheduled: int) -> Raw:
    ns = f' xmlns:d2p1="{SB2011}"'
    counts = (
        ("ActiveMessageCount", active),
        ("DeadLetterMessageCount", dead_letter),
        ("ScheduledMessageCount", scheduled),
        ("TransferMessageCount", 0),
        ("TransferDeadLetterMessageCount", 0),
    )
    inner = "".join(f"<d2p1:{name}{ns}>{n}</d2p1:{name}>" for name, n in counts)
    return Raw(inner)


def description(kind: str, fields: Iterable[tuple[str, Any]]) -> str:
    return f'<{kind} xmlns="{SB}" xmlns:i="{XSI}">{elements(fields)}</{kind}>'


def entry(base: str, path: str, title: str, created: int, updated: int, content: str) -> str:
    href = escape(f"{base}/{path}?api-version=2021-05")
    return (
        f'<entry xmlns="{ATOM}"><id>{href}</id><title type="text">{escape(title)}</title>'
        f"<published>{timestamp(created)}</published><updated>{timestamp(updated)}</updated>"
        f"<author><name>{escape(base.split('//')[-1])}</name></author>"
        f'<link rel="self" href={quoteattr(href)}/>'
        f'<content type="application/xml">{content}</content></entry>'
    )


def feed(base: str, path: str, title: str, entries: list[str], next_href: str | None, now: int) -> str:
    href = f"{base}/{path}"
    links = f'<link rel="self" href={quoteattr(href)}/>'
    if next_href is not None:
        links += f'<link rel="next" href={quoteattr(next_href)}/>'
    # Entries are complete documents with their own default namespace; strip their xmlns to nest them.
    body = "".join(e.replace(f'<entry xmlns="{ATOM}">', "<entry>", 1) for e in entries)
    return (
        f'<feed xmlns="{ATOM}"><title type="text">{escape(title)}</title><id>{escape(href)}</id>'
        f"<updated>{timestamp(now)}</updated>{links}{body}</feed>"
    )


def error(code: int, detail: str) -> str:
    return f"<Error><Code>{code}</Code><Detail>{escape(detail)}</Detail></Error>"


# ------------------------------------------------------------------------------------------------ rules


def _typed(value: Any) -> tuple[str, str]:
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, int):
        return ("int" if -(2**31) <= value < 2**31 else "long"), str(value)
    if isinstance(value, float):
        return "double", repr(value)
    return "string", str(value)


def key_values(values: Mapping[str, Any]) -> Raw:
    items = []
    for key, value in values.items():
        kind, text = _typed(value)
        items.append(
            f"<KeyValueOfstringanyType><Key>{escape(key)}</Key>"
            f'<Value xmlns:d6p1="{XSD}" i:type="d6p1:{kind}">{escape(text)}</Value></KeyValueOfstringanyType>'
        )
    return Raw("".join(items))


def rule_filter_xml(kind: str, fields: Iterable[tuple[str, Any]]) -> str:
    return f'<Filter i:type="{kind}">{elements(fields)}</Filter>'


def rule_action_xml(expression: str | None, parameters: Mapping[str, Any] | None = None) -> str:
    if expression is None:
        return '<Action i:type="EmptyRuleAction"/>'
    params = f"<Parameters>{key_values(parameters).xml}</Parameters>" if parameters else ""
    return (
        f'<Action i:type="SqlRuleAction"><SqlExpression>{escape(expression)}</SqlExpression>'
        f"<CompatibilityLevel>20</CompatibilityLevel>{params}</Action>"
    )


# ------------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class ParsedDescription:
    kind: str  # one of KINDS
    element: ET.Element


def parse_description(body: bytes) -> ParsedDescription:
    """The entity description inside an ATOM entry (or a bare description)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise AtomError(f"the body is not XML: {exc}") from exc
    for element in root.iter():
        local = _local(element.tag)
        if local in KINDS:
            return ParsedDescription(local, element)
    raise AtomError("the body holds no QueueDescription, TopicDescription, SubscriptionDescription or RuleDescription")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def fields(element: ET.Element) -> dict[str, str]:
    """Child element name -> text, for the simple-valued children of a description."""
    return {_local(child.tag): (child.text or "") for child in element if len(child) == 0}


def child(element: ET.Element, name: str) -> ET.Element | None:
    for item in element:
        if _local(item.tag) == name:
            return item
    return None


def _xsi_type(element: ET.Element) -> str:
    value = element.attrib.get(f"{{{XSI}}}type", "")
    return value.rsplit(":", 1)[-1]


def _parsed_value(element: ET.Element) -> Any:
    kind, text = _xsi_type(element), element.text or ""
    if kind in ("int", "long", "short", "byte"):
        return int(text)
    if kind == "double" or kind == "float" or kind == "decimal":
        return float(text)
    if kind == "boolean":
        return text.lower() == "true"
    if kind == "string":
        return text
    raise AtomError(f"property values of type {kind!r} are not supported by the emulator")


def _key_values(element: ET.Element | None) -> dict[str, Any]:
    if element is None:
        return {}
    values: dict[str, Any] = {}
    for item in element:
        key, value = child(item, "Key"), child(item, "Value")
        if key is None or value is None:
            raise AtomError("a KeyValueOfstringanyType needs a Key and a Value")
        values[key.text or ""] = _parsed_value(value)
    return values


CORRELATION_FIELDS = ("CorrelationId", "MessageId", "To", "ReplyTo", "Label", "SessionId", "ReplyToSessionId",
                      "ContentType")  # fmt: skip


def sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def bind_parameters(expression: str, parameters: Mapping[str, Any]) -> str:
    """The SQL expression with each `@name` outside string literals replaced by its parameter's literal."""
    out: list[str] = []
    i, n = 0, len(expression)
    while i < n:
        ch = expression[i]
        if ch == "'":  # a string literal ('' is a quote inside it): copied as it is
            end = i + 1
            while end < n:
                if expression[end] == "'":
                    if expression[end + 1 : end + 2] != "'":
                        break
                    end += 1
                end += 1
            out.append(expression[i : end + 1])
            i = end + 1
            continue
        if ch == "@":
            end = i + 1
            while end < n and (expression[end].isalnum() or expression[end] == "_"):
                end += 1
            name = expression[i:end]
            if name not in parameters:
                raise AtomError(f"the SQL expression uses {name}, which has no parameter")
            out.append(sql_literal(parameters[name]))
            i = end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def rule_document(name: str, element: ET.Element) -> dict[str, Any]:
    """A `RuleDescription` as a rule of `Config.json` (`{"Name", "Properties": {...}}`), SQL parameters bound.

    The expressions as given and their parameters are kept under `"Sql"` so the rule can be shown as created.
    """
    props: dict[str, Any]
    sql: dict[str, Any] = {}
    filter_element = child(element, "Filter")
    kind = _xsi_type(filter_element) if filter_element is not None else "TrueFilter"
    if kind in ("TrueFilter", "FalseFilter", "SqlFilter"):
        default = {"TrueFilter": "1=1", "FalseFilter": "1=0"}.get(kind, "")
        expression = fields(filter_element).get("SqlExpression", default) if filter_element is not None else default
        expression = expression or default
        parameters = _key_values(child(filter_element, "Parameters")) if filter_element is not None else {}
        if parameters:
            sql["filter"] = {"expression": expression, "parameters": parameters}
            expression = bind_parameters(expression, parameters)
        props = {"FilterType": "Sql", "SqlFilter": {"SqlExpression": expression}}
    elif kind == "CorrelationFilter":
        assert filter_element is not None
        given = fields(filter_element)
        correlation: dict[str, Any] = {key: given[key] for key in CORRELATION_FIELDS if given.get(key)}
        user = _key_values(child(filter_element, "Properties"))
        if user:
            correlation["Properties"] = user
        props = {"FilterType": "Correlation", "CorrelationFilter": correlation}
    else:
        raise AtomError(f"filter type {kind!r} is not supported")
    action_element = child(element, "Action")
    if action_element is not None and _xsi_type(action_element) == "SqlRuleAction":
        expression = fields(action_element).get("SqlExpression", "")
        parameters = _key_values(child(action_element, "Parameters"))
        if parameters:
            sql["action"] = {"expression": expression, "parameters": parameters}
            expression = bind_parameters(expression, parameters)
        if expression.strip():
            props["Action"] = {"SqlExpression": expression}
    return {"Name": name, "Properties": props, "Sql": sql}
