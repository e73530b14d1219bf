"""Composition root: builds the adapters the triggers hand to the use cases.

Every trigger calls :func:`services` once per invocation; tests pass fakes through its keyword arguments.
No SDK client is shared between threads: blob and Service Bus clients are kept per thread inside their
adapters, HTTP sessions are per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.endpoint import HttpScoringEndpoint
from shared.ledger import Ledger
from shared.ports import BlobStore, Clock, MessageBus, ScoringEndpoint
from shared.settings import ScoringRoute, Settings, get_settings

EndpointFactory = Callable[[ScoringRoute], ScoringEndpoint]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


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
    if endpoint_for is None:
        timeouts = {"connect_timeout": settings.connect_timeout_seconds, "read_timeout": settings.read_timeout_seconds}

        def endpoint_for(route: ScoringRoute) -> ScoringEndpoint:
            return HttpScoringEndpoint(route, **timeouts)

    return Services(
        settings=settings,
        blobs=blobs,
        bus=bus,
        ledger=Ledger(blobs, settings.ledger_container),
        clock=clock or SystemClock(),
        endpoint_for=endpoint_for,
    )
