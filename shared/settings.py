"""Function app settings: what every function needs, and each model route's endpoint, read apart.

:class:`Settings` (connections, container and topic names, limits, retry policy, the routed models) is read
once per process by :func:`get_settings`. A route's scoring endpoint (:class:`EndpointSettings`: URI, key,
deployment, timeouts) is read only by the function that calls it (:func:`get_endpoint`), so a missing or
unresolved endpoint setting breaks ``score_request`` alone, never the blob trigger, the writer or the status
route. Both are read with :class:`shared.config.SettingsReader` and fail with the setting's name.

Connections follow the Functions conventions, so the same names serve the trigger bindings and our SDK
clients: ``DataStorage`` / ``ServiceBus`` hold a connection string, or the identity style
``DataStorage__blobServiceUri`` / ``ServiceBus__fullyQualifiedNamespace`` (with an optional
``<Name>__clientId`` for a user-assigned managed identity).

Model routes come from the declaration :mod:`shared.routes` reads (``models.json``, or ``MODEL_ROUTES_FILE``).
Route ``<model>`` calls ``SCORING_URI__<SUFFIX>`` with ``SCORING_KEY__<SUFFIX>`` (suffix = model name upper-cased,
``-`` as ``_``), falling back to ``SCORING_URI`` / ``SCORING_KEY``, and pins the Azure ML deployment in
``SCORING_DEPLOYMENT__<SUFFIX>`` when set (the Bicep sets it to the route's name for every declared route).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from shared.config import Connection, SettingsError, SettingsReader
from shared.retry import SCORING_ENDPOINT, RetryPolicy
from shared.routes import ROUTES_FILE_SETTING, Route, RoutesError, load_routes, routes_file, setting_suffix

__all__ = ["Connection", "EndpointSettings", "Settings", "SettingsError"]

DATA_STORAGE = "DataStorage"
SERVICE_BUS = "ServiceBus"
BLOB_SOURCES = ("LogsAndContainerScan", "EventGrid")
CONNECT_TIMEOUT_SECONDS = 5.0  # SCORING_CONNECT_TIMEOUT_SECONDS
READ_TIMEOUT_SECONDS = 30.0  # SCORING_READ_TIMEOUT_SECONDS
SAS_TTL_MINUTES = 60  # SAS_TTL_MINUTES
RESULT_DEADLINE_MINUTES = 60  # RESULT_DEADLINE_MINUTES
BATCH_MAX_FILES = 50  # SCORING_BATCH_MAX_FILES
BATCH_MAX_FILE_BYTES = 1024 * 1024  # SCORING_BATCH_MAX_FILE_BYTES


@dataclass(frozen=True)
class Settings:
    data_storage: Connection
    service_bus: Connection
    input_container: str
    output_container: str
    ledger_container: str
    results_container: str  # where the scoring endpoint stages large outputs; the writer deletes them
    request_topic: str
    result_topic: str
    writer_subscription: str
    routes: tuple[Route, ...]
    max_input_bytes: int
    sas_ttl_minutes: int
    result_deadline_minutes: int
    max_resubmits: int
    scoring_retry: RetryPolicy
    batch_max_files: int = BATCH_MAX_FILES  # small files sent in one request to the endpoint (1: no batching)
    batch_max_file_bytes: int = BATCH_MAX_FILE_BYTES  # larger inputs always get a request (and a job) of their own
    # RECONCILE_CHECK_OUTPUTS: a success stays marked until reconcile has seen its output, for a storage that can
    # lose acknowledged writes (Azurite after kill -9); the Bicep sets false for Azure Storage (see shared.ledger).
    reconcile_check_outputs: bool = True

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(r.model for r in self.routes)

    def route(self, model: str) -> Route | None:
        return next((r for r in self.routes if r.model == model), None)


@dataclass(frozen=True)
class EndpointSettings:
    """One route's scoring endpoint."""

    model: str
    uri: str
    key: str | None = field(repr=False)
    deployment: str | None
    connect_timeout_seconds: float
    read_timeout_seconds: float


def load_settings(env: Mapping[str, str]) -> Settings:
    read = SettingsReader(env)
    routes = declared_routes(env)
    read.choice("BLOB_TRIGGER_SOURCE", BLOB_SOURCES)  # checked here too, so a bad value fails every invocation
    return Settings(
        data_storage=read.blob_connection(DATA_STORAGE),
        service_bus=read.servicebus_connection(SERVICE_BUS),
        input_container=read.text("INPUT_CONTAINER", "input"),
        output_container=read.text("OUTPUT_CONTAINER", "output"),
        ledger_container=read.text("LEDGER_CONTAINER", "ledger"),
        results_container=read.text("RESULTS_CONTAINER", "results"),
        request_topic=read.text("REQUEST_TOPIC", "inference-requests"),
        result_topic=read.text("RESULT_TOPIC", "inference-results"),
        writer_subscription=read.text("WRITER_SUBSCRIPTION", "writer"),
        routes=routes,
        max_input_bytes=read.integer("MAX_INPUT_BYTES", 2 * 1024**3, minimum=1),
        sas_ttl_minutes=read.integer("SAS_TTL_MINUTES", SAS_TTL_MINUTES, minimum=1),
        result_deadline_minutes=read.integer("RESULT_DEADLINE_MINUTES", RESULT_DEADLINE_MINUTES, minimum=1),
        max_resubmits=read.integer("MAX_RESUBMITS", 2),
        scoring_retry=RetryPolicy(
            tries=read.integer("SCORING_MAX_RETRIES", (SCORING_ENDPOINT.tries or 1) - 1) + 1,
            base_seconds=read.number("SCORING_RETRY_BASE_SECONDS", SCORING_ENDPOINT.base_seconds),
            max_seconds=read.number("SCORING_RETRY_MAX_SECONDS", SCORING_ENDPOINT.max_seconds),
        ),
        batch_max_files=read.integer("SCORING_BATCH_MAX_FILES", BATCH_MAX_FILES, minimum=1),
        batch_max_file_bytes=read.integer("SCORING_BATCH_MAX_FILE_BYTES", BATCH_MAX_FILE_BYTES, minimum=0),
        reconcile_check_outputs=read.choice("RECONCILE_CHECK_OUTPUTS", ("true", "false")) == "true",
    )


def load_endpoint(env: Mapping[str, str], model: str) -> EndpointSettings:
    """The endpoint of ``model``'s route: its own URI and key, else ``SCORING_URI`` / ``SCORING_KEY``."""
    read = SettingsReader(env)
    suffix = setting_suffix(model)
    own_uri = read.optional(f"SCORING_URI__{suffix}")
    uri = read.url(f"SCORING_URI__{suffix}") if own_uri else read.url("SCORING_URI")
    key = read.optional(f"SCORING_KEY__{suffix}") or read.optional("SCORING_KEY")
    deployment = read.optional(f"SCORING_DEPLOYMENT__{suffix}")
    return EndpointSettings(
        model=model,
        uri=uri,
        key=key,
        deployment=deployment,
        connect_timeout_seconds=read.number("SCORING_CONNECT_TIMEOUT_SECONDS", CONNECT_TIMEOUT_SECONDS),
        read_timeout_seconds=read.number("SCORING_READ_TIMEOUT_SECONDS", READ_TIMEOUT_SECONDS),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once on first use."""
    return load_settings(os.environ)


@lru_cache(maxsize=32)
def get_endpoint(model: str) -> EndpointSettings:
    """A route's endpoint, read once on first use (a failed read is not kept: the next call reads again)."""
    return load_endpoint(os.environ, model)


def blob_trigger_source(env: Mapping[str, str] = os.environ) -> str:
    """Read at indexing time (the decorator needs it before any invocation)."""
    return SettingsReader(env).choice("BLOB_TRIGGER_SOURCE", BLOB_SOURCES)


def declared_routes(env: Mapping[str, str] = os.environ) -> tuple[Route, ...]:
    """Read at indexing time too: one score_request function is registered per route, the default first."""
    try:
        return load_routes(routes_file(env))
    except RoutesError as exc:
        raise SettingsError(f"model routes ({ROUTES_FILE_SETTING}): {exc}") from exc
