"""The one settings reader: every component (function app, scoring service, client, local functions host)
reads its settings through :class:`SettingsReader` and reports a bad one with :class:`SettingsError`.

Each component keeps one small frozen dataclass of its own settings, built once from a mapping (the process
environment, or several sources merged) with this reader. The reader fails fast with the setting's name for
a missing or malformed value, and for two values that look set but are not usable:

* an unresolved Key Vault reference (``@Microsoft.KeyVault(...)``): App Service leaves the reference text
  in the setting when it cannot resolve it (the secret does not exist yet, or the identity cannot read it);
* a template placeholder (``<...>``) left from a deployment template, for readers made with
  ``placeholders=False`` (the scoring service; the function app's local example keeps placeholders for
  values the local stack does not check, such as the endpoint key).

Connections follow the Functions runtime's rules, so our SDK clients and the trigger bindings agree: setting
``<name>`` (or ``AzureWebJobs<name>``) holds a connection string; otherwise ``<name>__<key>`` settings (``:``
also accepted as the separator) describe an identity-based connection: ``fullyQualifiedNamespace`` (Service
Bus), ``blobServiceUri`` / ``serviceUri`` / ``queueServiceUri`` / ``accountName`` (Storage), with optional
``credential`` and ``clientId``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
_PLACEHOLDER = re.compile(r"<[^<>]*>")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Connection:
    """How a connection name resolves: a connection string, or identity-based endpoints."""

    name: str
    connection_string: str | None = None
    fully_qualified_namespace: str | None = None
    service_uri: str | None = None  # the blob service
    queue_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


class SettingsReader:
    """Typed reads of one mapping of settings; ``label`` says where a name's value came from, for messages."""

    def __init__(
        self, values: Mapping[str, str], label: Callable[[str], str] | None = None, *, placeholders: bool = True
    ) -> None:
        self._values = values
        self._label = label or (lambda name: name)
        self._placeholders = placeholders

    def describe(self, name: str) -> str:
        """The setting's name as messages give it (with where its value came from, if the caller says)."""
        return self._label(name)

    def error(self, name: str, problem: str) -> SettingsError:
        return SettingsError(f"setting {self._label(name)} {problem}")

    def optional(self, name: str) -> str | None:
        """The value, stripped; None when unset or blank. An unusable value (see the module) raises."""
        value = (self._values.get(name) or "").strip()
        if not value:
            return None
        if value.startswith(KEY_VAULT_REFERENCE):
            raise self.error(
                name,
                "is an unresolved Key Vault reference (the secret does not exist yet or the app's identity "
                "cannot read it)",
            )
        if not self._placeholders and _PLACEHOLDER.search(value):
            raise self.error(name, f"still holds a template placeholder ({value!r}); set the real value")
        return value

    def text(self, name: str, default: str | None = None) -> str:
        value = self.optional(name) or default
        if not value:
            raise self.error(name, "is required")
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.optional(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError as exc:
            raise self.error(name, f"must be an integer, got {raw!r}") from exc
        if value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        """A positive number."""
        raw = self.optional(name)
        try:
            value = default if raw is None else float(raw)
        except ValueError as exc:
            raise self.error(name, f"must be a number, got {raw!r}") from exc
        if not value > 0:
            raise self.error(name, f"must be > 0, got {value}")
        return value

    def url(self, name: str, default: str | None = None) -> str:
        value = self.text(name, default)
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise self.error(name, f"must be an http(s) URL, got {value!r}")
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        """One of ``choices``; the first is the default."""
        value = self.optional(name) or choices[0]
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def _section(self, prefix: str, key: str) -> str | None:
        for separator in ("__", ":"):
            value = self.optional(f"{prefix}{separator}{key}")
            if value:
                return value
        return None

    def connection(self, name: str) -> Connection:
        """Resolve a connection name the way the Functions runtime does (see the module docstring)."""
        for candidate in (name, f"AzureWebJobs{name}"):
            value = self.optional(candidate)
            if value:
                return Connection(name=name, connection_string=value)
        for prefix in (name, f"AzureWebJobs{name}"):
            namespace = self._section(prefix, "fullyQualifiedNamespace")
            service_uri = self._section(prefix, "blobServiceUri") or self._section(prefix, "serviceUri")
            queue_uri = self._section(prefix, "queueServiceUri")
            account = self._section(prefix, "accountName")
            if account:
                service_uri = service_uri or f"https://{account}.blob.core.windows.net"
                queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
            if namespace or service_uri or queue_uri:
                return Connection(
                    name=name,
                    fully_qualified_namespace=namespace,
                    service_uri=service_uri,
                    queue_service_uri=queue_uri,
                    credential=self._section(prefix, "credential"),
                    client_id=self._section(prefix, "clientId"),
                )
        raise SettingsError(
            f"connection '{name}' is not configured: set setting {name} to a connection string, or "
            f"{name}__fullyQualifiedNamespace (Service Bus) / {name}__blobServiceUri (Storage) for an identity"
        )

    def blob_connection(self, name: str) -> Connection:
        connection = self.connection(name)
        if connection.uses_identity and not connection.service_uri:
            raise self.error(f"{name}__blobServiceUri", f"is required (connection {name} has no blob service URI)")
        return connection

    def servicebus_connection(self, name: str) -> Connection:
        connection = self.connection(name)
        if connection.uses_identity and not connection.fully_qualified_namespace:
            raise self.error(f"{name}__fullyQualifiedNamespace", f"is required (connection {name} has no namespace)")
        return connection
