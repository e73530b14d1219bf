"""App settings for the local functions host: local.settings.json, %SETTING% expressions and connection names.

Errors are :class:`shared.config.SettingsError` naming the function and the setting; connection names resolve
with :class:`shared.config.SettingsReader`, the same rules the function app's own clients use.

Precedence (same as Azure Functions Core Tools): a variable already set in the process environment wins over the
same name in ``local.settings.json`` ``Values``; values from the file only fill in names that are not set.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from shared.config import Connection, SettingsError, SettingsReader

__all__ = ["Connection", "SettingsError", "resolve_connection"]
logger = logging.getLogger(__name__)

LOCAL_SETTINGS = "local.settings.json"
LOCAL_SETTINGS_EXAMPLE = "local.settings.json.example"
_EXPRESSION = re.compile(r"%([^%]+)%")


def load_local_settings(script_root: Path) -> dict[str, str]:
    """The ``Values`` of local.settings.json (or of the committed .example when there is no local file)."""
    for name in (LOCAL_SETTINGS, LOCAL_SETTINGS_EXAMPLE):
        path = script_root / name
        if path.is_file():
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{path.name} is not valid JSON: {exc}") from exc
            values = document.get("Values", {}) if isinstance(document, dict) else None
            if not isinstance(values, dict):
                raise SettingsError(f"{path.name}: 'Values' must be an object of strings")
            logger.info("app settings read from %s", path.name)
            return {str(k): "" if v is None else str(v) for k, v in values.items()}
    logger.info("no %s in %s; using the environment only", LOCAL_SETTINGS, script_root)
    return {}


def apply_to_environment(values: Mapping[str, str], environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put ``values`` into the environment without overriding names already set; returns the names skipped."""
    env = os.environ if environ is None else environ
    skipped = []
    for name, value in values.items():
        if name in env:
            skipped.append(name)
            logger.info("skipping '%s' from local settings: already set in the environment", name)
        else:
            env[name] = value
    return skipped


def load_host_json(script_root: Path) -> dict[str, Any]:
    path = script_root / "host.json"
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"host.json is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SettingsError("host.json must hold a JSON object")
    return document


def resolve_expression(value: str, environ: Mapping[str, str], where: str) -> str:
    """Replace each ``%NAME%`` in ``value`` by the app setting NAME; ``where`` says who asked, for the error."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise SettingsError(f"{where} references app setting '{name}', which is not set")
        return environ[name]

    return _EXPRESSION.sub(lookup, value)


def resolve_binding(binding: dict[str, Any], environ: Mapping[str, str], function_name: str) -> dict[str, Any]:
    """A copy of a binding (function.json shape) with ``%NAME%`` resolved in every string field."""
    resolved: dict[str, Any] = {}
    for key, value in binding.items():
        if isinstance(value, str) and key not in ("name", "type", "direction"):
            where = f"function '{function_name}', binding '{binding.get('name')}', field '{key}'"
            resolved[key] = resolve_expression(value, environ, where)
        else:
            resolved[key] = value
    return resolved


def resolve_connection(name: str, environ: Mapping[str, str], where: str) -> Connection:
    """Resolve a connection name the way the runtime does (:meth:`shared.config.SettingsReader.connection`)."""
    try:
        return SettingsReader(environ).connection(name)
    except SettingsError as exc:
        raise SettingsError(f"{where}: {exc}") from None
