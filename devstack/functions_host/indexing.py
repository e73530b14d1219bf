"""Load a v2-model ``function_app.py`` and index it with azure.functions' own metadata.

Each function becomes a ``FunctionSpec``: its bindings in function.json shape with ``%SETTING%`` expressions
resolved, its trigger, its user function and the connections its bindings name. Anything the local host cannot
drive fails here, at start-up, with the function's name in the message.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.functions import meta

from .blob_binding import deferred_converter, is_deferred
from .settings import Connection, SettingsError, resolve_binding, resolve_connection

logger = logging.getLogger(__name__)

DEFAULT_SCRIPT = "function_app.py"
TRIGGER_TYPES = ("httpTrigger", "timerTrigger", "blobTrigger", "serviceBusTrigger")
OUTPUT_TYPES = ("http", "serviceBus")


class IndexingError(ValueError):
    """The app cannot be loaded or one of its functions cannot be driven by this host."""


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    trigger: dict[str, Any]
    outputs: tuple[dict[str, Any], ...]
    user_function: Callable[..., Any]
    parameters: tuple[str, ...]
    is_async: bool
    connections: Mapping[str, Connection] = field(default_factory=dict)
    function_json: str = ""
    trigger_annotation: Any = None
    # The trigger parameter is an SDK type: the host passes a reference (model_binding_data), not the content.
    trigger_deferred: bool = False

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    def connection(self, binding: Mapping[str, Any]) -> Connection:
        return self.connections[str(binding["connection"])]


def import_script(script_root: Path, script_name: str | None = None) -> ModuleType:
    """Import the app script as the worker does: script root on sys.path, module named after the file."""
    name = script_name or os.environ.get("PYTHON_SCRIPT_FILE_NAME") or DEFAULT_SCRIPT
    path = (script_root / name).resolve()
    if not path.is_file():
        raise IndexingError(f"no {name} in {script_root.resolve()}")
    root = str(path.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module_name = path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise IndexingError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise IndexingError(f"importing {name} failed: {type(exc).__name__}: {exc}") from exc
    return module


def find_app(module: ModuleType) -> func.FunctionRegister:
    app = getattr(module, "app", None)
    if isinstance(app, func.FunctionRegister):
        return app
    for value in vars(module).values():
        if isinstance(value, func.FunctionRegister):
            return value
    raise IndexingError(f"{module.__name__} defines no FunctionApp (expected a module attribute 'app')")


def _binding_dicts(function: Any) -> list[dict[str, Any]]:
    # get_function_json() is the exact document the worker reports to the host when indexing.
    document = json.loads(function.get_function_json())
    return [dict(b) for b in document.get("bindings", [])]


def index_function(function: Any, environ: Mapping[str, str]) -> FunctionSpec:
    name = str(function.get_function_name())
    raw = _binding_dicts(function)
    bindings = [resolve_binding(b, environ, name) for b in raw]
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise IndexingError(f"function '{name}' must have exactly one trigger, found {len(triggers)}")
    trigger = triggers[0]
    if trigger["type"] not in TRIGGER_TYPES:
        raise IndexingError(
            f"function '{name}': trigger type '{trigger['type']}' is not supported by the local functions host "
            f"(supported: {', '.join(TRIGGER_TYPES)}); run it with Azure Functions Core Tools instead"
        )
    outputs = []
    for binding in bindings:
        if binding is trigger:
            continue
        direction = str(binding.get("direction", "")).upper()
        if direction != "OUT" or binding.get("type") not in OUTPUT_TYPES:
            raise IndexingError(
                f"function '{name}': binding '{binding.get('name')}' ({binding.get('type')}, {direction or '?'}) "
                f"is not supported by the local functions host (outputs: {', '.join(OUTPUT_TYPES)})"
            )
        outputs.append(binding)
    connections: dict[str, Connection] = {}
    for binding in bindings:
        conn = binding.get("connection")
        if conn and conn not in connections:
            where = f"function '{name}', binding '{binding.get('name')}'"
            connections[str(conn)] = resolve_connection(str(conn), environ, where)
    user_function = function.get_user_function()
    parameters = tuple(inspect.signature(user_function).parameters)
    for binding in [trigger, *outputs]:
        arg = binding["name"]
        if arg != "$return" and arg not in parameters:
            raise IndexingError(f"function '{name}': binding '{arg}' has no parameter of that name")
    if function.get_settings_dict("retry_policy"):
        logger.warning("function '%s': its retry policy is ignored by the local functions host", name)
    hints = _type_hints(user_function)
    _check_annotations(name, hints, trigger, outputs)
    return FunctionSpec(
        name=name,
        trigger=trigger,
        outputs=tuple(outputs),
        user_function=user_function,
        parameters=parameters,
        is_async=inspect.iscoroutinefunction(user_function),
        connections=connections,
        function_json=function.get_function_json(),
        trigger_annotation=hints.get(str(trigger["name"])),
        trigger_deferred=is_deferred(hints.get(str(trigger["name"]))),
    )


def _type_hints(user_function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(user_function)
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not checked
        return {}


def _checkable(hint: Any) -> bool:
    return isinstance(hint, type) or typing.get_origin(hint) is list


def _check_annotations(
    name: str, hints: Mapping[str, Any], trigger: Mapping[str, Any], outputs: list[dict[str, Any]]
) -> None:
    """Reject annotations the worker would reject at load time (only plain classes and lists are checked)."""
    registry = meta.get_binding_registry()
    hint = hints.get(str(trigger["name"]))
    converter = registry.get(str(trigger["type"]))
    if is_deferred(hint):
        if deferred_converter(str(trigger["type"]), hint) is None:
            raise IndexingError(
                f"function '{name}': parameter '{trigger['name']}' is annotated {hint!r}, an SDK type that no "
                f"installed extension provides for a {trigger['type']} binding"
            )
    elif converter is not None and _checkable(hint) and not converter.check_input_type_annotation(hint):
        advice = (
            " (azure.functions accepts typing.List[...] here, not list[...])"
            if isinstance(hint, types.GenericAlias)
            else ""
        )
        raise IndexingError(
            f"function '{name}': parameter '{trigger['name']}' is annotated {hint!r}, "
            f"which the {trigger['type']} binding cannot provide{advice}"
        )
    for binding in outputs:
        arg = str(binding["name"])
        if arg == "$return":
            continue
        hint = hints.get(arg)
        if hint is not None and typing.get_origin(hint) is not func.Out and hint is not func.Out:
            raise IndexingError(f"function '{name}': output parameter '{arg}' must be annotated func.Out[...]")


def index_app(script_root: Path, environ: Mapping[str, str] | None = None) -> list[FunctionSpec]:
    """Import the script and index every function, or raise IndexingError/SettingsError naming what is wrong."""
    env = os.environ if environ is None else environ
    app = find_app(import_script(script_root))
    specs = []
    for function in app.get_functions():
        try:
            specs.append(index_function(function, env))
        except SettingsError as exc:
            raise IndexingError(str(exc)) from exc
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise IndexingError(f"duplicate function names: {', '.join(duplicates)}")
    logger.info("indexed %d functions: %s", len(specs), ", ".join(names))
    return specs
