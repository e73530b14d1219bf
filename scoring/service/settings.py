"""Settings of the scoring service, read once from the environment of the inference server.

Missing optional integrations are explicit: without a Service Bus setting the service scores sync
requests only and answers async ones with 503 naming the setting to add. Invalid values fail at
start-up with the setting's name in the message. Secrets are kept out of ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.contracts import DEFAULT_MODEL
from shared.retry import RESULT_PUBLISH

DEFAULT_RESULT_TOPIC = "inference-results"
DEFAULT_RESULTS_CONTAINER = "results"
MIB = 1024 * 1024


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    if "<" in value and ">" in value:
        raise SettingsError(f"{name} still holds a template placeholder ({value!r}); set the real value")
    return value or None


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

    @property
    def async_enabled(self) -> bool:
        return self.servicebus_connection is not None or self.servicebus_namespace is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScoringSettings:
        env = os.environ if env is None else env
        model_dir = _text(env, "AZUREML_MODEL_DIR")
        if model_dir is None:
            raise SettingsError("AZUREML_MODEL_DIR is not set (azmlinfsrv sets it from --model_dir)")
        settings = cls(
            model_dir=Path(model_dir),
            result_topic=_text(env, "RESULT_TOPIC") or DEFAULT_RESULT_TOPIC,
            model_name=_text(env, "SCORING_MODEL_NAME") or DEFAULT_MODEL,
            servicebus_connection=_text(env, "RESULT_SERVICEBUS_CONNECTION"),
            servicebus_namespace=_text(env, "RESULT_SERVICEBUS_NAMESPACE"),
            results_connection=_text(env, "RESULTS_STORAGE_CONNECTION"),
            results_account_url=_text(env, "RESULTS_STORAGE_ACCOUNT_URL"),
            results_container=_text(env, "RESULTS_CONTAINER") or DEFAULT_RESULTS_CONTAINER,
            max_input_bytes=_int(env, "MAX_INPUT_BYTES", cls.max_input_bytes),
            max_data_bytes=_int(env, "SCORING_MAX_DATA_BYTES", cls.max_data_bytes),
            max_record_bytes=_int(env, "SCORING_MAX_RECORD_BYTES", cls.max_record_bytes, minimum=1024),
            chunk_bytes=_int(env, "SCORING_CHUNK_BYTES", cls.chunk_bytes, minimum=4096),
            queue_size=_int(env, "SCORING_QUEUE_SIZE", cls.queue_size),
            workers=_int(env, "SCORING_WORKERS", cls.workers),
            dedupe_entries=_int(env, "SCORING_DEDUPE_ENTRIES", cls.dedupe_entries),
            retry_after_seconds=_int(env, "SCORING_RETRY_AFTER_SECONDS", cls.retry_after_seconds),
            max_sync_rows=_int(env, "SCORING_MAX_SYNC_ROWS", cls.max_sync_rows),
            publish_attempts=_int(env, "SCORING_PUBLISH_ATTEMPTS", cls.publish_attempts),
        )
        if settings.servicebus_connection and settings.servicebus_namespace:
            raise SettingsError("set only one of RESULT_SERVICEBUS_CONNECTION and RESULT_SERVICEBUS_NAMESPACE")
        if settings.async_enabled and not (settings.results_connection or settings.results_account_url):
            raise SettingsError(
                "async scoring needs RESULTS_STORAGE_CONNECTION or RESULTS_STORAGE_ACCOUNT_URL for outputs over "
                "the inline limit"
            )
        if settings.results_connection and settings.results_account_url:
            raise SettingsError("set only one of RESULTS_STORAGE_CONNECTION and RESULTS_STORAGE_ACCOUNT_URL")
        return settings
