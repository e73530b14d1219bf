"""Settings of the scoring service, read once from the environment of the inference server.

Missing optional integrations are explicit: without a Service Bus setting the service scores sync
requests only and answers async ones with 503 naming the setting to add. Invalid values (and template
placeholders left from ``deployment.yml``) fail at start-up with the setting's name in the message, read
with :class:`shared.config.SettingsReader`. Secrets are kept out of ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shared.config import SettingsError, SettingsReader
from shared.contracts import DEFAULT_MODEL
from shared.retry import RESULT_PUBLISH

__all__ = ["ScoringSettings", "SettingsError"]

DEFAULT_RESULT_TOPIC = "inference-results"
DEFAULT_RESULTS_CONTAINER = "results"
MIB = 1024 * 1024


def _urls(read: SettingsReader, name: str) -> tuple[str, ...]:
    """Comma-separated ``http(s)://host[:port][/path]`` URLs without credentials, query or fragment."""
    urls = []
    for item in (read.optional(name) or "").split(","):
        url = item.strip()
        if not url:
            continue
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError as exc:
            raise read.error(name, f"has {url!r}, which is not a valid URL ({exc})") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise read.error(name, f"has {url!r}; expected http(s) URLs with a host")
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise read.error(name, f"has {url!r}; URLs must not carry credentials, a query or a fragment")
        urls.append(url)
    return tuple(urls)


@dataclass(frozen=True)
class ScoringSettings:
    model_dir: Path
    result_topic: str = DEFAULT_RESULT_TOPIC
    model_name: str = DEFAULT_MODEL
    servicebus_connection: str | None = field(default=None, repr=False)
    servicebus_namespace: str | None = None
    results_connection: str | None = field(default=None, repr=False)
    results_account_url: str | None = None
    results_container: str = DEFAULT_RESULTS_CONTAINER
    # Blob account URLs async requests may read input from (INPUT_STORAGE_ACCOUNT_URLS); empty: the results account.
    input_account_urls: tuple[str, ...] = ()
    max_input_bytes: int = 2048 * MIB  # compressed size as stored
    max_data_bytes: int = 4096 * MIB  # after decompression: the gzip-bomb guard
    max_record_bytes: int = 1 * MIB
    chunk_bytes: int = 4 * MIB
    queue_size: int = 8
    workers: int = 1
    dedupe_entries: int = 4096
    retry_after_seconds: int = 10
    max_sync_rows: int = 100_000
    publish_attempts: int = RESULT_PUBLISH.tries or 1
    class_probabilities: bool = False  # a classifier's output adds probability_<label> per class
    # Threads a model's native code (OpenMP, BLAS) may use per scoring thread: one core is left to the
    # reader and upload threads that run beside a prediction.
    model_threads: int = max(1, (os.cpu_count() or 1) - 1)
    # Row ranges a large batch is predicted in at once where the service computes the model's feature step
    # (scoring.service.ordinal), each on its own thread with one native thread.
    predict_parts: int = os.cpu_count() or 1

    @property
    def async_enabled(self) -> bool:
        return self.servicebus_connection is not None or self.servicebus_namespace is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScoringSettings:
        read = SettingsReader(os.environ if env is None else env, placeholders=False)
        model_dir = read.optional("AZUREML_MODEL_DIR")
        if model_dir is None:
            raise SettingsError("setting AZUREML_MODEL_DIR is not set (azmlinfsrv sets it from --model_dir)")
        settings = cls(
            model_dir=Path(model_dir),
            result_topic=read.text("RESULT_TOPIC", DEFAULT_RESULT_TOPIC),
            model_name=read.text("SCORING_MODEL_NAME", DEFAULT_MODEL),
            servicebus_connection=read.optional("RESULT_SERVICEBUS_CONNECTION"),
            servicebus_namespace=read.optional("RESULT_SERVICEBUS_NAMESPACE"),
            results_connection=read.optional("RESULTS_STORAGE_CONNECTION"),
            results_account_url=read.optional("RESULTS_STORAGE_ACCOUNT_URL"),
            results_container=read.text("RESULTS_CONTAINER", DEFAULT_RESULTS_CONTAINER),
            input_account_urls=_urls(read, "INPUT_STORAGE_ACCOUNT_URLS"),
            max_input_bytes=read.integer("MAX_INPUT_BYTES", cls.max_input_bytes, minimum=1),
            max_data_bytes=read.integer("SCORING_MAX_DATA_BYTES", cls.max_data_bytes, minimum=1),
            max_record_bytes=read.integer("SCORING_MAX_RECORD_BYTES", cls.max_record_bytes, minimum=1024),
            chunk_bytes=read.integer("SCORING_CHUNK_BYTES", cls.chunk_bytes, minimum=4096),
            queue_size=read.integer("SCORING_QUEUE_SIZE", cls.queue_size, minimum=1),
            workers=read.integer("SCORING_WORKERS", cls.workers, minimum=1),
            dedupe_entries=read.integer("SCORING_DEDUPE_ENTRIES", cls.dedupe_entries, minimum=1),
            retry_after_seconds=read.integer("SCORING_RETRY_AFTER_SECONDS", cls.retry_after_seconds, minimum=1),
            max_sync_rows=read.integer("SCORING_MAX_SYNC_ROWS", cls.max_sync_rows, minimum=1),
            publish_attempts=read.integer("SCORING_PUBLISH_ATTEMPTS", cls.publish_attempts, minimum=1),
            class_probabilities=read.choice("SCORING_CLASS_PROBABILITIES", ("false", "true")) == "true",
            model_threads=read.integer("SCORING_MODEL_THREADS", cls.model_threads, minimum=1),
            predict_parts=read.integer("SCORING_PREDICT_PARTS", cls.predict_parts, minimum=1),
        )
        if settings.servicebus_connection and settings.servicebus_namespace:
            raise SettingsError("set only one of settings RESULT_SERVICEBUS_CONNECTION and RESULT_SERVICEBUS_NAMESPACE")
        if settings.async_enabled and not (settings.results_connection or settings.results_account_url):
            raise SettingsError(
                "async scoring needs RESULTS_STORAGE_CONNECTION or RESULTS_STORAGE_ACCOUNT_URL for outputs over "
                "the inline limit"
            )
        if settings.results_connection and settings.results_account_url:
            raise SettingsError("set only one of settings RESULTS_STORAGE_CONNECTION and RESULTS_STORAGE_ACCOUNT_URL")
        return settings
