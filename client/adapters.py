"""Factories for the client's ports: the real ones build SDK clients; unit tests hand in fakes."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from client.ports import InputStore, OutputFetcher, ResultInbox, StatusSource, SyncScoringEndpoint
from client.settings import ClientSettings
from shared.config import SettingsError


@dataclass
class Adapters:
    """Factories for the ports; the real ones build SDK clients from the settings."""

    input_store: Callable[[ClientSettings], InputStore]
    output_fetcher: Callable[[ClientSettings], OutputFetcher]
    inbox: Callable[[ClientSettings, str], AbstractContextManager[ResultInbox]]
    scoring: Callable[[ClientSettings, float], SyncScoringEndpoint]
    status: Callable[[ClientSettings], StatusSource]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def real_adapters() -> Adapters:
    # The SDKs are imported only by the commands that need them, so --help and score stay quick.
    def input_store(s: ClientSettings) -> InputStore:
        from client.azure_io import BlobInputStore

        return BlobInputStore(s.storage, s.input_container)

    def output_fetcher(s: ClientSettings) -> OutputFetcher:
        from client.azure_io import BlobOutputFetcher

        return BlobOutputFetcher(s.storage, s.output_container)

    def inbox(s: ClientSettings, session_id: str) -> AbstractContextManager[ResultInbox]:
        from client.azure_io import open_session_inbox

        return open_session_inbox(s.servicebus, s.result_topic, s.client_subscription, session_id)

    def scoring(s: ClientSettings, timeout: float) -> SyncScoringEndpoint:
        from client.http_io import HttpSyncScoring

        if s.scoring_uri is None:
            raise SettingsError("no scoring URI for this model route")  # run_score names the setting first
        return HttpSyncScoring(s.scoring_uri, s.scoring_key, s.scoring_deployment, timeout)

    def status(s: ClientSettings) -> StatusSource:
        from client.http_io import HttpStatusSource

        return HttpStatusSource(s.functions_url, s.functions_key)

    return Adapters(input_store, output_fetcher, inbox, scoring, status)
