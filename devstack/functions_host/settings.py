"""App settings for the local functions host: local.settings.json, %SETTING% expressions and connection names.

Precedence (same as Azure Functions Core Tools): a variable already set in the process environment wins over the
same name in ``local.settings.json`` ``Values``; values from the file only fill in names that are not set.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOCAL_SETTINGS = "local.settings.json"
LOCAL_SETTINGS_EXAMPLE = "local.settings.json.example"
_EXPRESSION = re.compile(r"%([^%]+)%")


class SettingsError(ValueError):
    """A setting that a function needs is missing or malformed; the message names the function and the setting."""


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


@dataclass(frozen=True)
class Connection:
    """How a binding's ``connection`` name resolves: a connection string, or identity-style settings."""

    name: str
    connection_string: str | None = None
    fully_qualified_namespace: str | None = None
    service_uri: str | None = None
    queue_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


def _setting(environ: Mapping[str, str], prefix: str, key: str) -> str | None:
    # The runtime accepts both "__" and ":" as the section separator.
    for separator in ("__", ":"):
        value = environ.get(f"{prefix}{separator}{key}")
        if value:
            return value
    return None


def resolve_connection(name: str, environ: Mapping[str, str], where: str) -> Connection:
    """Resolve a connection name the way the runtime does: ``<name>``, then ``AzureWebJobs<name>``, then sections."""
    for candidate in (name, f"AzureWebJobs{name}"):
        value = environ.get(candidate)
        if value:
            return Connection(name=name, connection_string=value)
    for prefix in (name, f"AzureWebJobs{name}"):
        namespace = _setting(environ, prefix, "fullyQualifiedNamespace")
        service_uri = _setting(environ, prefix, "blobServiceUri") or _setting(environ, prefix, "serviceUri")
        account = _setting(environ, prefix, "accountName")
        if account and not service_uri:
            service_uri = f"https://{account}.blob.core.windows.net"
        queue_uri = _setting(environ, prefix, "queueServiceUri")
        if account and not queue_uri:
            queue_uri = f"https://{account}.queue.core.windows.net"
        if namespace or service_uri or queue_uri:
            return Connection(
                name=name,
                fully_qualified_namespace=namespace,
                service_uri=service_uri,
                queue_service_uri=queue_uri,
                credential=_setting(environ, prefix, "credential"),
                client_id=_setting(environ, prefix, "clientId"),
            )
    raise SettingsError(
        f"{where}: connection '{name}' is not configured; set '{name}' to a connection string, or "
        f"'{name}__fullyQualifiedNamespace' (Service Bus) / '{name}__blobServiceUri' (Storage) for identity"
    )
