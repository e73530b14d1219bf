"""Recursive-descent parser for the SQL of Service Bus subscription rules, compiling to :mod:`.sqlexpr` closures.

Precedence, loosest first: OR; AND; NOT; comparisons (``= <> != < <= > >=``, ``IS [NOT] NULL``, ``[NOT] IN``,
``[NOT] LIKE ... [ESCAPE ...]``, which do not chain); ``+ -``; ``* / %``; unary ``+ -``. Primaries are constants
(numbers, ``'strings'``, TRUE, FALSE, NULL), properties (``name``, ``[delimited name]``, ``"quoted name"``, with an
optional ``sys.`` or ``user.`` scope), ``EXISTS(property)``, ``newid()``, ``property(expr)``/``p(expr)`` and
parenthesised expressions. Keywords and function names are case-insensitive.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Final

from . import sqlexpr as x
from .sqltokens import KEYWORDS, FilterSyntaxError, Token, tokenize

FUNCTIONS: Final = ("NEWID", "PROPERTY", "P")
_NAME_KINDS: Final = ("ident", "delimited")


@dataclass(frozen=True, slots=True)
class ActionStep:
    """One statement of a rule action: ``SET name = value`` or ``REMOVE name`` (user properties)."""

    name: str
    value: x.Evaluator | None  # None for REMOVE


def compile_condition(expression: str) -> x.Node:
    """The compiled filter condition; FilterSyntaxError if it does not parse."""
    parser = _FilterParser(expression)
    if parser.token.kind == "end":
        raise FilterSyntaxError("the expression is empty", expression, 0)
    node = parser.disjunction()
    if parser.token.kind != "end":
        expected = "AND, OR or the end of the expression" if node.is_condition else "a comparison, IN, LIKE or IS"
        raise parser.unexpected(expected)
    return parser.truth(node)


def compile_action(expression: str) -> list[ActionStep]:
    """The statements of a rule action (``SET``/``REMOVE``, optionally separated by ``;``)."""
    parser = _FilterParser(expression)
    steps: list[ActionStep] = []
    while parser.token.kind != "end":
        verb = parser.token.text.upper() if parser.token.kind == "ident" else ""
        if verb not in ("SET", "REMOVE"):
            raise parser.unexpected("SET or REMOVE" if not steps else "';', SET, REMOVE or the end of the action")
        parser.advance()
        if parser.token.kind not in _NAME_KINDS:
            raise parser.unexpected(f"a property name after {verb}")
        target = parser.property()
        assert target.prop is not None
        scope, name = target.prop
        if scope == "sys":
            raise FilterSyntaxError(
                f"rule actions can change user properties only, not sys.{name}", expression, target.pos
            )
        if verb == "SET":
            parser.expect_op("=", "'=' after the property name")
            steps.append(ActionStep(name, parser.value(parser.additive()).fn))
        else:
            steps.append(ActionStep(name, None))
        while parser.at_op(";"):
            parser.advance()
    if not steps:
        raise FilterSyntaxError("the action is empty", expression, 0)
    return steps


class _FilterParser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = tokenize(expression)
        self.index = 0

    # ------------------------------------------------------------------------------------------ token access
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def peek(self) -> Token:
        return self.tokens[min(self.index + 1, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.token
        if token.kind != "end":
            self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.token.kind == "keyword" and self.token.value in words

    def at_op(self, *ops: str) -> bool:
        return self.token.kind == "op" and self.token.value in ops

    def expect_op(self, op: str, expected: str) -> Token:
        if not self.at_op(op):
            raise self.unexpected(expected)
        return self.advance()

    def error(self, problem: str, pos: int) -> FilterSyntaxError:
        return FilterSyntaxError(problem, self.expression, pos)

    def unexpected(self, expected: str) -> FilterSyntaxError:
        token = self.token
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        return self.error(f"expected {expected}, found {found}{_hint(token, [*KEYWORDS, *FUNCTIONS])}", token.pos)

    # ------------------------------------------------------------------------------------------ node checks
    def truth(self, node: x.Node) -> x.Node:
        """``node`` as a condition: a comparison-like node, or a TRUE/FALSE constant."""
        if node.is_condition:
            return node
        if node.const and isinstance(node.value, bool):
            return x.const_node(node.value, node.pos, is_condition=True)
        raise self.error("expected a condition (such as x = 1 or EXISTS(x)), found a value", node.pos)

    def value(self, node: x.Node) -> x.Node:
        if node.is_condition:
            raise self.error("a condition cannot be used as a value here", node.pos)
        return node

    # ------------------------------------------------------------------------------------------ conditions
    def disjunction(self) -> x.Node:
        left = self.conjunction()
        while self.at_keyword("OR"):
            self.advance()
            right = self.truth(self.conjunction())
            left = self.truth(left)
            left = x.derived_node(x.disjunction(left.fn, right.fn), left.pos, (left, right), True)
        return left

    def conjunction(self) -> x.Node:
        left = self.negation()
        while self.at_keyword("AND"):
            self.advance()
            right = self.truth(self.negation())
            left = self.truth(left)
            left = x.derived_node(x.conjunction(left.fn, right.fn), left.pos, (left, right), True)
        return left

    def negation(self) -> x.Node:
        if self.at_keyword("NOT"):
            token = self.advance()
            operand = self.truth(self.negation())
            return x.derived_node(x.negation(operand.fn), token.pos, (operand,), True)
        return self.comparison()

    def comparison(self) -> x.Node:
        left = self.additive()
        token = self.token
        if token.kind == "op" and token.value in x.COMPARATORS:
            self.advance()
            right = self.value(self.additive())
            self.value(left)
            node = x.derived_node(x.comparison(token.value, left, right), left.pos, (left, right), True)
        elif self.at_keyword("IS"):
            self.advance()
            negated = self.at_keyword("NOT")
            if negated:
                self.advance()
            if not self.at_keyword("NULL"):
                raise self.unexpected("NULL after IS" + (" NOT" if negated else ""))
            self.advance()
            node = self._negated(x.derived_node(x.is_null(self.value(left).fn), left.pos, (left,), True), negated)
        elif self.at_keyword("IN", "LIKE") or (
            self.at_keyword("NOT") and self.peek().kind == "keyword" and self.peek().value in ("IN", "LIKE")
        ):
            negated = self.at_keyword("NOT")
            if negated:
                self.advance()
            operator = self.advance().value
            operand = self.value(left)
            node = self._negated(self.in_list(operand) if operator == "IN" else self.like(operand), negated)
        else:
            return left
        if self.token.kind == "op" and self.token.value in x.COMPARATORS:
            raise self.error("comparisons do not chain; combine them with AND", self.token.pos)
        return node

    def _negated(self, node: x.Node, negated: bool) -> x.Node:
        return x.derived_node(x.negation(node.fn), node.pos, (node,), True) if negated else node

    def in_list(self, left: x.Node) -> x.Node:
        self.expect_op("(", "'(' after IN")
        items = [self.value(self.additive())]
        while self.at_op(","):
            self.advance()
            items.append(self.value(self.additive()))
        self.expect_op(")", "',' or ')' in the IN list")
        return x.derived_node(x.membership(left.fn, items), left.pos, (left, *items), True)

    def like(self, left: x.Node) -> x.Node:
        pattern = self.value(self.additive())
        escape = None
        if self.at_keyword("ESCAPE"):
            self.advance()
            escape = self.value(self.additive())
        if pattern.const and (escape is None or escape.const):
            escape_char = self._escape_char(escape)
            if not isinstance(pattern.value, str):
                raise self.error("the LIKE pattern must be a string", pattern.pos)
            try:
                test = x.like_matcher(pattern.value, escape_char)
            except ValueError as exc:
                raise self.error(str(exc), pattern.pos) from exc
            evaluate = x.like_constant(left.fn, test)
        else:
            evaluate = x.like_dynamic(left.fn, pattern.fn, escape.fn if escape is not None else None)
        return x.derived_node(evaluate, left.pos, (left, pattern) if escape is None else (left, pattern, escape), True)

    def _escape_char(self, escape: x.Node | None) -> str | None:
        if escape is None:
            return None
        if not (isinstance(escape.value, str) and len(escape.value) == 1):
            raise self.error("the ESCAPE value must be a string of one character", escape.pos)
        return escape.value

    # ------------------------------------------------------------------------------------------ values
    def additive(self) -> x.Node:
        left = self.multiplicative()
        while self.at_op("+", "-"):
            op = self.advance().value
            right = self.value(self.multiplicative())
            left = self.value(left)
            left = x.derived_node(x.arithmetic(op, left.fn, right.fn), left.pos, (left, right), False)
        return left

    def multiplicative(self) -> x.Node:
        left = self.unary()
        while self.at_op("*", "/", "%"):
            op = self.advance().value
            right = self.value(self.unary())
            left = self.value(left)
            left = x.derived_node(x.arithmetic(op, left.fn, right.fn), left.pos, (left, right), False)
        return left

    def unary(self) -> x.Node:
        if self.at_op("+", "-"):
            token = self.advance()
            operand = self.value(self.unary())
            return x.derived_node(x.sign(token.value, operand.fn), token.pos, (operand,), False)
        return self.primary()

    def primary(self) -> x.Node:
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return x.const_node(token.value, token.pos)
        if self.at_keyword("TRUE", "FALSE", "NULL"):
            self.advance()
            return x.const_node({"TRUE": True, "FALSE": False, "NULL": None}[token.value], token.pos)
        if self.at_keyword("EXISTS"):
            return self.exists()
        if self.at_op("("):
            self.advance()
            inner = self.disjunction()
            self.expect_op(")", "')'" if inner.is_condition else "an operator or ')'")
            return inner
        if token.kind == "ident" and self.peek().kind == "op" and self.peek().value == "(":
            return self.function()
        if token.kind in _NAME_KINDS:
            return self.property()
        raise self.unexpected("a constant, a property, EXISTS or '('")

    def exists(self) -> x.Node:
        token = self.advance()
        self.expect_op("(", "'(' after EXISTS")
        if self.token.kind not in _NAME_KINDS:
            raise self.unexpected("a property name in EXISTS(...)")
        target = self.property()
        assert target.prop is not None
        self.expect_op(")", "')' after the property name")
        return x.Node(x.exists(*target.prop), token.pos, is_condition=True)

    def function(self) -> x.Node:
        token = self.advance()
        self.advance()  # the '('
        name = token.text.upper()
        if name == "NEWID":
            self.expect_op(")", "')': newid() takes no argument")
            return x.Node(x.newid(), token.pos)
        if name in ("PROPERTY", "P"):
            argument = self.value(self.additive())
            self.expect_op(")", "')' after the property name")
            return x.Node(x.property_by_name(argument.fn), token.pos)  # never folded: it reads the message
        hint = _hint(token, [*FUNCTIONS, "EXISTS"])
        raise self.error(
            f"unknown function {token.text}(); known are newid(), property(name), p(name){hint}", token.pos
        )

    def property(self) -> x.Node:
        token = self.advance()
        if token.kind == "ident" and self.at_op("."):
            scope = token.text.lower()
            if scope not in ("sys", "user"):
                raise self.error(f"unknown scope {token.text!r}; the scopes are sys and user", token.pos)
            self.advance()
            name_token = self.token
            if name_token.kind not in (*_NAME_KINDS, "keyword"):
                raise self.unexpected(f"a property name after {token.text}.")
            self.advance()
            name = name_token.value if name_token.kind == "delimited" else name_token.text
            if scope == "user":
                return x.Node(x.user_getter(name), token.pos, prop=("user", name))
            canonical = x.system_property_name(name)
            if canonical is None:
                hint = _hint(name_token, x.SYSTEM_PROPERTIES, upper=False)
                raise self.error(f"unknown system property sys.{name}{hint}", name_token.pos)
            return x.Node(x.system_getter(canonical), token.pos, prop=("sys", canonical))
        name = token.value if token.kind == "delimited" else token.text
        return x.Node(x.user_getter(name), token.pos, prop=("user", name))


def _hint(token: Token, candidates: list[str] | tuple[str, ...], upper: bool = True) -> str:
    """' (did you mean X?)' for a word close to one of ``candidates``, else ''."""
    if token.kind not in ("ident", "keyword", "delimited") or not isinstance(token.value, str):
        return ""
    word = token.text.upper() if upper else str(token.value)
    if word in candidates:
        return ""
    if upper:
        close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    else:
        by_lower = {c.lower(): c for c in candidates}
        close = [by_lower[c] for c in difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)]
    return f" (did you mean {close[0]}?)" if close else ""
