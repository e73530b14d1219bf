"""Tokenizer for the SQL language of Service Bus subscription rules, and its positioned syntax error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

KEYWORDS: Final = frozenset({"AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "IS", "NULL", "EXISTS", "TRUE", "FALSE"})
_INT64_MAX: Final = 2**63 - 1


class FilterSyntaxError(ValueError):
    """An expression that does not parse; ``position`` is the 0-based offset of the offending text."""

    def __init__(self, problem: str, expression: str, position: int) -> None:
        self.problem = problem
        self.expression = expression
        self.position = position
        super().__init__(f"column {position + 1}: {problem}")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # number, string, ident, delimited, keyword, op, end
    value: Any  # the parsed constant, the unquoted name, the upper-cased keyword or the operator
    pos: int
    text: str  # as written


_TOKEN_RE: Final = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
    |(?P<string>'(?:[^']|'')*')
    |(?P<bracket>\[(?:[^\]]|\]\])*\])
    |(?P<quoted>"(?:[^"]|"")*")
    |(?P<ident>[^\W\d_]\w*)
    |(?P<op><>|!=|<=|>=|[=<>+\-*/%(),.;])
    """,
    re.VERBOSE,
)
_UNTERMINATED: Final = {"'": "string constant", "[": "delimited identifier", '"': "quoted identifier"}


def tokenize(expression: str) -> list[Token]:
    """The tokens of ``expression`` (whitespace dropped), ending with an ``end`` token."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(expression):
        match = _TOKEN_RE.match(expression, pos)
        if match is None:
            char = expression[pos]
            if char in _UNTERMINATED:
                raise FilterSyntaxError(f"unterminated {_UNTERMINATED[char]}", expression, pos)
            raise FilterSyntaxError(f"unexpected character {char!r}", expression, pos)
        kind = match.lastgroup
        text = match.group()
        if kind == "number":
            tokens.append(Token("number", _number(text, expression, pos), pos, text))
        elif kind == "string":
            tokens.append(Token("string", text[1:-1].replace("''", "'"), pos, text))
        elif kind == "bracket":
            tokens.append(Token("delimited", text[1:-1].replace("]]", "]"), pos, text))
        elif kind == "quoted":
            tokens.append(Token("delimited", text[1:-1].replace('""', '"'), pos, text))
        elif kind == "ident":
            upper = text.upper()
            tokens.append(Token("keyword", upper, pos, text) if upper in KEYWORDS else Token("ident", text, pos, text))
        elif kind == "op":
            tokens.append(Token("op", text, pos, text))
        pos = match.end()
    tokens.append(Token("end", None, len(expression), ""))
    return tokens


def _number(text: str, expression: str, pos: int) -> int | float:
    if any(c in text for c in ".eE"):
        return float(text)
    value = int(text)
    if value > _INT64_MAX + 1:  # +1: the magnitude of the most negative long, which a unary minus makes valid
        raise FilterSyntaxError(f"integer constant {text} is out of the 64-bit range", expression, pos)
    return value
