"""Reads the Bicep templates offline: parses them with pycep and evaluates the simple expressions we use.

No Bicep compiler is available offline, so tests check the templates' text through this model: the
parse tree of each file (pycep's independent grammar, which also rejects syntax errors) and a small
evaluator for literals, parameters, variables, property access, string interpolation, conditionals and
the few functions the app settings use. Anything it cannot know before deployment (resource outputs,
``uniqueString``) evaluates to a :class:`Dynamic` placeholder.

pycep writes identifiers and string literals the same way; a bare string is taken as a reference when
it names a parameter, variable or lambda variable in scope, else as a literal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[3]
INFRA = REPO / "infra"
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Dynamic(str):
    """A value known only at deployment time."""


@cache
def parse(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = dict(BicepParser().parse(text=path.read_text()))
    return result


@dataclass
class Scope:
    """Evaluation context of one Bicep file: its path, parameter values and lambda variables."""

    path: Path
    params: Mapping[str, Any]
    lambdas: dict[str, Any] = field(default_factory=dict)

    @property
    def tree(self) -> dict[str, Any]:
        return parse(self.path)

    def names(self) -> set[str]:
        tree = self.tree
        return set(tree.get("parameters", {})) | set(tree.get("variables", {})) | set(self.lambdas)

    def lookup(self, name: str) -> Any:
        if name in self.lambdas:
            return self.lambdas[name]
        params = self.tree.get("parameters", {})
        if name in params:
            if name in self.params:
                return self.params[name]
            default = params[name].get("default")
            return Dynamic(f"<param {name}>") if default is None else evaluate(default, self)
        variables = self.tree.get("variables", {})
        if name in variables:
            if name in self.params:  # a test's stand-in for a variable, e.g. the routes main.bicep loads
                return self.params[name]
            return evaluate(variables[name]["value"], self)
        return Dynamic(f"<{name}>")


@dataclass(frozen=True)
class _Index:
    position: int


@dataclass(frozen=True)
class _Default:
    """``x.?key ?? default``, which pycep parses as ``x.(key ?? default)``."""

    key: str
    default: Any


def _path(node: Any) -> list[Any]:
    """``a.b[0].c`` as pycep nests it (right-leaning accessors) to ``[a, b, _Index(0), c]``."""
    if isinstance(node, dict) and "operator" in node:
        kind, operands = node["operator"]["type"], node["operator"].get("operands", {})
        if kind == "property_accessor":
            return [*_path(operands["operand_1"]), *_path(operands["operand_2"])]
        if kind == "index_accessor":
            return [*_path(operands["operand_1"]), _Index(operands["operand_2"])]
        if kind == "coalesce" and isinstance(operands["operand_1"], str):
            return [_Default(operands["operand_1"], operands["operand_2"])]
    return [node]


def _access(value: Any, key: Any, scope: Scope) -> Any:
    """``value.key``. pycep drops the ``?`` of ``.?``, so a missing key reads as null, as ``.?`` would."""
    if isinstance(value, Dynamic):
        return Dynamic(f"{value}.{key}")
    if isinstance(key, _Default):
        found = value.get(key.key) if isinstance(value, Mapping) else None
        return evaluate(key.default, scope) if found is None else found
    if value is None:
        return None
    if isinstance(key, _Index) and isinstance(value, list):
        return value[key.position]
    if isinstance(value, Mapping) and isinstance(key, str):
        return value.get(key)
    return Dynamic(f"<{key} of {value!r}>")


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _interpolate(text: str, scope: Scope) -> str:
    dynamic = False

    def replace(match: re.Match[str]) -> str:
        nonlocal dynamic
        parts = match.group(1).strip().split(".")
        value = scope.lookup(parts[0]) if _IDENTIFIER.match(parts[0]) else Dynamic(match.group(0))
        for part in parts[1:]:
            value = _access(value, part, scope)
        dynamic = dynamic or isinstance(value, Dynamic)
        return _string(value)

    result = _INTERPOLATION.sub(replace, text)
    return Dynamic(result) if dynamic else result


def _function(name: str, args: list[Any], node: Mapping[str, Any], scope: Scope) -> Any:
    if name == "string":
        return _string(args[0])
    if name == "union":
        merged: dict[str, Any] = {}
        for arg in args:
            merged.update(arg)
        return merged
    if name == "items":
        return [{"key": k, "value": v} for k, v in sorted(args[0].items())]
    if name == "join":
        return args[1].join(_string(item) for item in args[0])
    if name == "any":
        return args[0]
    if name == "empty":
        return len(args[0]) == 0
    if name == "length":
        return len(args[0])
    if name == "contains":
        return args[1] in args[0]
    if name == "flatten":
        return [item for inner in args[0] for item in inner]
    if name == "concat":
        if all(isinstance(arg, list) for arg in args):
            return [item for arg in args for item in arg]
        return "".join(_string(arg) for arg in args)
    if name == "subscription_resource_id":
        return "/".join(_string(arg) for arg in args if arg is not None)
    if name == "to_upper":
        return args[0].upper()
    if name == "replace":
        return args[0].replace(args[1], args[2])
    if name == "load_json_content":
        return json.loads((scope.path.parent / args[0]).read_text())
    return Dynamic(f"<{name}()>")


def _call(node: Mapping[str, Any], scope: Scope) -> Any:
    name = node["function"]["type"]
    params = node["function"].get("parameters") or {}
    if name in ("map", "filter"):
        array, fn = list(params.values())
        items, detail = evaluate(array, scope), fn["detail"]

        def apply(item: Any) -> Any:
            inner = Scope(scope.path, scope.params, {**scope.lambdas, detail["var_1"]: item})
            return evaluate(detail["expression"], inner)

        return [apply(item) for item in items] if name == "map" else [item for item in items if apply(item)]
    if name == "toObject":
        array, key_fn, *value_fn = list(params.values())

        def call(fn: Mapping[str, Any], item: Any) -> Any:
            detail = fn["detail"]
            return evaluate(
                detail["expression"], Scope(scope.path, scope.params, {**scope.lambdas, detail["var_1"]: item})
            )

        items = evaluate(array, scope)
        return {call(key_fn, item): call(value_fn[0], item) if value_fn and value_fn[0] else item for item in items}
    if name == "load_json_content":
        return _function(name, [params["file_path"]], node, scope)
    return _function(name, [evaluate(value, scope) for value in params.values()], node, scope)


def _is_comparison(node: Any) -> bool:
    return isinstance(node, dict) and node.get("operator", {}).get("type") in ("equals", "not_equals")


def evaluate(node: Any, scope: Scope) -> Any:
    """Value of a pycep expression node in ``scope`` (see the module docstring for what is supported)."""
    if isinstance(node, str):
        if _IDENTIFIER.match(node) and node in scope.names():
            return scope.lookup(node)
        return _interpolate(node, scope) if "${" in node else node
    if isinstance(node, (bool, int, float)) or node is None:
        return node
    if isinstance(node, list):
        return [evaluate(item, scope) for item in node]
    if isinstance(node, dict) and "operator" in node:
        op = node["operator"]
        kind, operands = op["type"], op.get("operands", {})
        if kind == "property_accessor" and _is_comparison(operands["operand_2"]):
            # pycep reads ``a.b != c`` as ``a.(b != c)``; Bicep compares ``a.b`` with ``c``.
            inner = operands["operand_2"]["operator"]
            left = {"operator": {"type": "property_accessor", "operands": {
                "operand_1": operands["operand_1"], "operand_2": inner["operands"]["operand_1"]}}}  # fmt: skip
            return evaluate({"operator": {**inner, "operands": {**inner["operands"], "operand_1": left}}}, scope)
        if kind == "property_accessor":
            path = _path(node)
            value = evaluate(path[0], scope)
            for key in path[1:]:
                value = _access(value, key, scope)
            return value
        if kind == "conditional":
            condition = evaluate(operands["condition"], scope)
            if isinstance(condition, Dynamic):
                return Dynamic(f"<if {condition}>")
            return evaluate(operands["true_value" if condition else "false_value"], scope)
        if kind == "equals":
            return evaluate(operands["operand_1"], scope) == evaluate(operands["operand_2"], scope)
        if kind == "not_equals":
            return evaluate(operands["operand_1"], scope) != evaluate(operands["operand_2"], scope)
        if kind == "not":
            return not evaluate(operands["bool_value"], scope)
        if kind == "and":
            return evaluate(operands["operand_1"], scope) and evaluate(operands["operand_2"], scope)
        if kind == "or":
            return evaluate(operands["operand_1"], scope) or evaluate(operands["operand_2"], scope)
        if kind == "greater_than":
            return evaluate(operands["operand_1"], scope) > evaluate(operands["operand_2"], scope)
        return Dynamic(f"<{kind}>")
    if isinstance(node, dict) and "function" in node:
        return _call(node, scope)
    if isinstance(node, dict):
        return {key: evaluate(value, scope) for key, value in node.items()}
    return Dynamic(f"<{node!r}>")


def main_scope(**params: Any) -> Scope:
    return Scope(INFRA / "main.bicep", params)


def module_body(module: Mapping[str, Any]) -> dict[str, Any]:
    """A module declaration's body; a conditional module (``= if (...) {...}``) nests it once more."""
    config: dict[str, Any] = module["config"]
    return config["config"] if "condition" in config else config


def module_scope(caller: Scope, module: str) -> Scope:
    """Scope of module ``module`` (its symbolic name in the caller) with the parameters the caller passes."""
    config = caller.tree["modules"][module]
    path = (caller.path.parent / config["detail"]["path"]).resolve()
    passed = module_body(config)["params"]
    return Scope(path, {name: evaluate(value, caller) for name, value in passed.items()})


def function_app_settings(hosting_plan: str) -> dict[str, Any]:
    """The function app's settings as main.bicep deploys them on ``hosting_plan``."""
    app = module_scope(main_scope(hostingPlan=hosting_plan), "functionApp")
    settings = app.lookup("allSettings")
    assert isinstance(settings, dict), f"allSettings did not evaluate to an object: {settings!r}"
    return settings


@dataclass(frozen=True)
class RoleGrant:
    """One role assignment a template makes: who (an expression's value), which role id, on what resource."""

    principal: Any
    role_id: str
    scope_type: str
    scope_name: str
    symbol: str


def _iterations(config: Mapping[str, Any], scope: Scope) -> list[tuple[dict[str, Any], Mapping[str, Any]]]:
    """(lambda variables, body) for each instance a resource declaration creates (loops and conditions)."""
    loop = config.get("loop_type")
    if loop is not None:
        detail = loop["detail"]
        items = evaluate(detail["array_name"], scope)
        assert isinstance(items, list), f"loop over {detail['array_name']} did not evaluate to an array"
        body = config["config"]
        result = []
        for i, item in enumerate(items):
            names = {detail["item_name"]: item}
            if "index_name" in detail:
                names[detail["index_name"]] = i
            result.append((names, body))
        return result
    if "condition" in config:
        condition = evaluate(config["condition"], scope)
        assert not isinstance(condition, Dynamic), f"condition {config['condition']!r} is not known before deployment"
        return [({}, config["config"])] if condition else []
    return [({}, config)]


def _scope_resource(node: Any, scope: Scope) -> tuple[str, str]:
    """(type, name) of the resource a ``scope:`` expression names (``x`` or ``x[i]``)."""
    if isinstance(node, str):
        symbol, index = node, None
    else:
        operands = node["operator"]["operands"]
        symbol, index = operands["operand_1"], evaluate(operands["operand_2"], scope)
    target = scope.tree["resources"][symbol]
    instances = _iterations(target["config"], scope)
    names, body = instances[0 if index is None else index]
    inner = Scope(scope.path, scope.params, {**scope.lambdas, **names})
    return target["type"], str(evaluate(body["name"], inner))


def role_assignments(scope: Scope) -> list[RoleGrant]:
    """Every role assignment ``scope``'s file makes, with loops unrolled and conditions applied."""
    grants = []
    for symbol, resource in scope.tree.get("resources", {}).items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        for names, body in _iterations(resource["config"], scope):
            inner = Scope(scope.path, scope.params, {**scope.lambdas, **names})
            role = str(evaluate(body["properties"]["roleDefinitionId"], inner)).rsplit("/", 1)[-1]
            kind, name = _scope_resource(body["scope"], inner)
            principal = evaluate(body["properties"]["principalId"], inner)
            grants.append(RoleGrant(principal, role, kind, name, symbol))
    return grants
