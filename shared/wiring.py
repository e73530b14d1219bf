"""Composition root: builds the adapters the triggers hand to the use cases.

Every trigger calls :func:`services` once per invocation; tests pass fakes through its keyword arguments.
Only the app-wide settings are read here; a route's endpoint settings are read when ``endpoint_for`` is
called, which only ``score_request`` does. No SDK client is shared between threads: blob and Service Bus
clients are kept per thread inside their adapters, HTTP sessions are per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.config import SettingsError
from shared.endpoint import HttpScoringEndpoint, UnconfiguredEndpoint
from shared.ledger import Ledger
from shared.ports import BlobStore, Clock, MessageBus, ScoringEndpoint
from shared.settings import Settings, get_endpoint, get_settings

logger = logging.getLogger(__name__)

EndpointFactory = Callable[[str], ScoringEndpoint]  # model -> its route's endpoint


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def configured_endpoint(model: str) -> ScoringEndpoint:
    """The HTTP endpoint of ``model``'s route; while its settings are missing or unresolved (the endpoint is
    not deployed yet), an endpoint that answers as unreachable, so the request backs off and is retried."""
    try:
        return HttpScoringEndpoint(get_endpoint(model))
    except SettingsError as exc:
        logger.warning("scoring endpoint of model %s is not configured yet: %s", model, exc)
        return UnconfiguredEndpoint(str(exc))


@dataclass(frozen=True)
class Services:
    settings: Settings
    blobs: BlobStore
    bus: MessageBus
    ledger: Ledger
    clock: Clock
    endpoint_for: EndpointFactory


def services(
    *,
    settings: Settings | None = None,
    blobs: BlobStore | None = None,
    bus: MessageBus | None = None,
    endpoint_for: EndpointFactory | None = None,
    clock: Clock | None = None,
) -> Services:
    settings = settings or get_settings()
    if blobs is None:
        from shared.storage import AzureBlobStore

        blobs = AzureBlobStore(settings.data_storage)
    if bus is None:
        from shared.bus import AzureMessageBus

        bus = AzureMessageBus(settings.service_bus)
    return Services(
        settings=settings,
        blobs=blobs,
        bus=bus,
        ledger=Ledger(blobs, settings.ledger_container, check_successes=settings.reconcile_check_outputs),
        clock=clock or SystemClock(),
        endpoint_for=endpoint_for or configured_endpoint,
    )
