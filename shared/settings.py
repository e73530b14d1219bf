"""Function app settings: one frozen dataclass, read once from the environment, failing fast by name.

Connections follow the Functions conventions, so the same names serve the trigger bindings and our SDK
clients: ``DataStorage`` / ``ServiceBus`` hold a connection string, or the identity style
``DataStorage__blobServiceUri`` / ``ServiceBus__fullyQualifiedNamespace`` (with an optional
``<Name>__clientId`` for a user-assigned managed identity).

Model routes: the default route serves :data:`shared.contracts.DEFAULT_MODEL` from ``SCORING_SUBSCRIPTION``
with ``SCORING_URI`` / ``SCORING_KEY`` / ``SCORING_DEPLOYMENT``. ``MODEL_ROUTES`` adds routes as
``model=subscription`` pairs (comma separated, e.g. ``churn-v2=scoring-churn-v2``); each reads
``SCORING_URI__<SUFFIX>``, ``SCORING_KEY__<SUFFIX>``, ``SCORING_DEPLOYMENT__<SUFFIX>`` (suffix = model name
upper-cased, non-alphanumerics as ``_``), falling back to the default endpoint's URI and key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlparse

from shared.contracts import DEFAULT_MODEL
from shared.retry import SCORING_ENDPOINT, RetryPolicy

DATA_STORAGE = "DataStorage"
SERVICE_BUS = "ServiceBus"
BLOB_SOURCES = ("LogsAndContainerScan", "EventGrid")
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class SettingsError(RuntimeError):
    """A required setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Connection:
    """A connection string, or an identity-based endpoint (``client_id`` picks a user-assigned identity)."""

    name: str
    connection_string: str | None = None
    endpoint: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class ScoringRoute:
    model: str
    subscription: str  # a literal name or a %SETTING% binding expression
    uri: str
    key: str | None
    deployment: str | None

    @property
    def function_suffix(self) -> str:
        return route_suffix(self.model).lower()


@dataclass(frozen=True)
class Settings:
    data_storage: Connection
    service_bus: Connection
    input_container: str
    output_container: str
    ledger_container: str
    request_topic: str
    result_topic: str
    routes: tuple[ScoringRoute, ...]
    max_input_bytes: int
    sas_ttl_minutes: int
    result_deadline_minutes: int
    max_resubmits: int
    scoring_retry: RetryPolicy
    connect_timeout_seconds: float
    read_timeout_seconds: float

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(r.model for r in self.routes)

    def route(self, model: str) -> ScoringRoute | None:
        return next((r for r in self.routes if r.model == model), None)


def route_suffix(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", model).upper()


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str | None = None) -> str:
        value = self.env.get(name, "").strip() or default
        if not value:
            raise SettingsError(f"setting {name} is required")
        return value

    def optional(self, name: str) -> str | None:
        return self.env.get(name, "").strip() or None

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.optional(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError as exc:
            raise SettingsError(f"setting {name} must be an integer, got {raw!r}") from exc
        if value < minimum:
            raise SettingsError(f"setting {name} must be >= {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.optional(name)
        try:
            value = default if raw is None else float(raw)
        except ValueError as exc:
            raise SettingsError(f"setting {name} must be a number, got {raw!r}") from exc
        if value <= 0:
            raise SettingsError(f"setting {name} must be > 0, got {value}")
        return value

    def url(self, name: str, default: str | None = None) -> str:
        value = self.text(name, default)
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SettingsError(f"setting {name} must be an http(s) URL, got {value!r}")
        return value

    def connection(self, name: str, identity_key: str) -> Connection:
        conn = self.optional(name)
        if conn:
            return Connection(name=name, connection_string=conn)
        endpoint = self.optional(f"{name}__{identity_key}")
        if not endpoint:
            raise SettingsError(f"setting {name} (connection string) or {name}__{identity_key} is required")
        return Connection(name=name, endpoint=endpoint, client_id=self.optional(f"{name}__clientId"))


def parse_model_routes(raw: str | None) -> tuple[tuple[str, str], ...]:
    """``MODEL_ROUTES`` as (model, subscription) pairs; raises SettingsError naming the setting."""
    pairs: list[tuple[str, str]] = []
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        model, sep, subscription = item.partition("=")
        model, subscription = model.strip(), subscription.strip()
        if not sep or not _MODEL_NAME.match(model) or not subscription:
            raise SettingsError(f"setting MODEL_ROUTES: expected model=subscription pairs, got {item.strip()!r}")
        if model == DEFAULT_MODEL or model in (m for m, _ in pairs):
            raise SettingsError(f"setting MODEL_ROUTES: model {model!r} is routed twice")
        pairs.append((model, subscription))
    return tuple(pairs)


def load_settings(env: Mapping[str, str]) -> Settings:
    read = _Reader(env)
    uri = read.url("SCORING_URI")
    key = read.optional("SCORING_KEY")
    routes = [
        ScoringRoute(
            model=DEFAULT_MODEL,
            subscription=read.text("SCORING_SUBSCRIPTION", "scoring"),
            uri=uri,
            key=key,
            deployment=read.optional("SCORING_DEPLOYMENT"),
        )
    ]
    for model, subscription in parse_model_routes(read.optional("MODEL_ROUTES")):
        suffix = route_suffix(model)
        routes.append(
            ScoringRoute(
                model=model,
                subscription=subscription,
                uri=read.url(f"SCORING_URI__{suffix}", uri),
                key=read.optional(f"SCORING_KEY__{suffix}") or key,
                deployment=read.optional(f"SCORING_DEPLOYMENT__{suffix}"),
            )
        )
    blob_trigger_source(env)  # validated here too, so a bad value fails the first invocation, not only indexing
    return Settings(
        data_storage=read.connection(DATA_STORAGE, "blobServiceUri"),
        service_bus=read.connection(SERVICE_BUS, "fullyQualifiedNamespace"),
        input_container=read.text("INPUT_CONTAINER", "input"),
        output_container=read.text("OUTPUT_CONTAINER", "output"),
        ledger_container=read.text("LEDGER_CONTAINER", "ledger"),
        request_topic=read.text("REQUEST_TOPIC", "inference-requests"),
        result_topic=read.text("RESULT_TOPIC", "inference-results"),
        routes=tuple(routes),
        max_input_bytes=read.integer("MAX_INPUT_BYTES", 2 * 1024**3, minimum=1),
        sas_ttl_minutes=read.integer("SAS_TTL_MINUTES", 60, minimum=1),
        result_deadline_minutes=read.integer("RESULT_DEADLINE_MINUTES", 60, minimum=1),
        max_resubmits=read.integer("MAX_RESUBMITS", 2),
        scoring_retry=RetryPolicy(
            tries=read.integer("SCORING_MAX_RETRIES", (SCORING_ENDPOINT.tries or 1) - 1) + 1,
            base_seconds=read.number("SCORING_RETRY_BASE_SECONDS", SCORING_ENDPOINT.base_seconds),
            max_seconds=read.number("SCORING_RETRY_MAX_SECONDS", SCORING_ENDPOINT.max_seconds),
        ),
        connect_timeout_seconds=read.number("SCORING_CONNECT_TIMEOUT_SECONDS", 5.0),
        read_timeout_seconds=read.number("SCORING_READ_TIMEOUT_SECONDS", 30.0),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once on first use."""
    return load_settings(os.environ)


def blob_trigger_source(env: Mapping[str, str] = os.environ) -> str:
    """Read at indexing time (the decorator needs it before any invocation)."""
    source = env.get("BLOB_TRIGGER_SOURCE", "").strip() or BLOB_SOURCES[0]
    if source not in BLOB_SOURCES:
        raise SettingsError(f"setting BLOB_TRIGGER_SOURCE must be one of {BLOB_SOURCES}, got {source!r}")
    return source


def extra_route_subscriptions(env: Mapping[str, str] = os.environ) -> tuple[tuple[str, str], ...]:
    """Read at indexing time: one score_request function is registered per extra route."""
    return parse_model_routes(env.get("MODEL_ROUTES"))
