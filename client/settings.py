"""Client settings: flags over environment over an optional local.settings.json, over local-stack defaults.

The names are the function app's (``DataStorage``, ``ServiceBus``, ``INPUT_CONTAINER``, ``RESULT_TOPIC``,
``SCORING_URI``...) plus client-only ones (``CLIENT_SUBSCRIPTION``, ``FUNCTIONS_URL``, ``FUNCTIONS_KEY``), so one
settings file can drive both. Identity-style settings (``DataStorage__blobServiceUri``,
``ServiceBus__fullyQualifiedNamespace``) select ``DefaultAzureCredential`` instead of a connection string.
Values are read with :class:`shared.config.SettingsReader`; a bad one raises
:class:`shared.config.SettingsError` naming the setting (and "(command line)" when a flag gave it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from shared.config import SettingsError, SettingsReader
from shared.contracts import DEFAULT_MODEL
from shared.routes import setting_suffix

LOCAL_STORAGE = "UseDevelopmentStorage=true"
LOCAL_SERVICEBUS = (
    "Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)
DEFAULTS: dict[str, str] = {
    "INPUT_CONTAINER": "input",
    "OUTPUT_CONTAINER": "output",
    "RESULT_TOPIC": "inference-results",
    "CLIENT_SUBSCRIPTION": "client",
    "SCORING_URI": "http://127.0.0.1:5001/score",
    "FUNCTIONS_URL": "http://127.0.0.1:7071",
    "MAX_INPUT_BYTES": str(2 * 1024**3),  # the function app's default
}
STORAGE = "DataStorage"
SERVICEBUS = "ServiceBus"


@dataclass(frozen=True)
class StorageTarget:
    """Blob storage: a connection string, or an account URL used with ``DefaultAzureCredential``."""

    connection_string: str | None = None
    account_url: str | None = None
    source: str = STORAGE  # the setting it came from, for error messages


@dataclass(frozen=True)
class ServiceBusTarget:
    """Service Bus: a connection string, or a fully qualified namespace used with ``DefaultAzureCredential``."""

    connection_string: str | None = None
    namespace: str | None = None
    source: str = SERVICEBUS


@dataclass(frozen=True)
class ClientSettings:
    storage: StorageTarget
    servicebus: ServiceBusTarget
    input_container: str
    output_container: str
    result_topic: str
    client_subscription: str
    scoring_uri: str | None  # of the model route the command names; None: that route has no URI set
    scoring_key: str | None
    scoring_deployment: str | None
    functions_url: str
    functions_key: str | None
    max_input_bytes: int


def _pairs(value: str) -> dict[str, str]:
    pairs = {}
    for part in value.strip().rstrip(";").split(";"):
        key, sep, val = part.partition("=")
        if not sep or not key.strip():
            return {}
        pairs[key.strip().lower()] = val.strip()
    return pairs


def parse_storage(value: str, source: str) -> StorageTarget:
    value = value.strip()
    if value.lower().startswith(("http://", "https://")):
        return StorageTarget(account_url=_url(value, source), source=source)
    pairs = _pairs(value)
    if pairs.get("usedevelopmentstorage") == "true" or "accountname" in pairs or "blobendpoint" in pairs:
        return StorageTarget(connection_string=value, source=source)
    raise SettingsError(
        f"setting {source}: not a storage connection string (expected AccountName=...;AccountKey=... or "
        "BlobEndpoint=..., or UseDevelopmentStorage=true) nor a https:// blob service URL"
    )


def parse_servicebus(value: str, source: str) -> ServiceBusTarget:
    value = value.strip()
    if "=" not in value:
        host = urlparse(value).hostname if "://" in value else value.strip("/")
        if not host or "/" in host or " " in host:
            raise SettingsError(f"setting {source}: {value!r} is not a Service Bus namespace host name")
        return ServiceBusTarget(namespace=host, source=source)
    pairs = _pairs(value)
    endpoint = pairs.get("endpoint", "")
    if not endpoint.startswith("sb://"):
        raise SettingsError(f"setting {source}: connection string needs Endpoint=sb://<namespace>")
    if not ("sharedaccesskey" in pairs or "sharedaccesssignature" in pairs):
        raise SettingsError(f"setting {source}: connection string needs SharedAccessKeyName/SharedAccessKey")
    return ServiceBusTarget(connection_string=value, source=source)


def _url(value: str, source: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(f"setting {source}: {value!r} is not an http(s) URL")
    return value.rstrip("/")


def _entity(read: SettingsReader, name: str) -> str:
    value = read.text(name, DEFAULTS[name])
    if "/" in value:
        raise read.error(name, f"{value!r} is not a valid entity name")
    return value


def read_settings_file(path: Path) -> dict[str, str]:
    """The ``Values`` of a local.settings.json (or a flat JSON object of settings)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"settings file {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"settings file {path}: not valid JSON ({exc})") from None
    values = data.get("Values", data) if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise SettingsError(f"settings file {path}: expected a JSON object with a 'Values' object")
    return {str(k): str(v) for k, v in values.items() if v is not None}


def load_settings(
    flags: Mapping[str, str | None],
    env: Mapping[str, str] | None = None,
    settings_file: Path | None = None,
    model: str = DEFAULT_MODEL,
) -> ClientSettings:
    """Resolve every setting once; ``flags`` maps setting names to command-line values (None = not given).

    The scoring settings are those of model route ``model``: ``SCORING_URI__<ROUTE>``, ``SCORING_KEY__<ROUTE>``
    and ``SCORING_DEPLOYMENT__<ROUTE>`` as the function app reads them; only the default route falls back to
    ``SCORING_URI`` (another route's rows must never be scored by the default model). ``--scoring-uri`` wins.
    """
    environ = os.environ if env is None else env
    merged = read_settings_file(settings_file) if settings_file is not None else {}
    merged |= {name: value for name, value in environ.items() if value.strip()}
    given = {name: value for name, value in flags.items() if value is not None}
    merged |= given
    read = SettingsReader(merged, lambda name: f"{name} (command line)" if name in given else name)
    return ClientSettings(
        storage=_storage(read),
        servicebus=_servicebus(read),
        input_container=_entity(read, "INPUT_CONTAINER"),
        output_container=_entity(read, "OUTPUT_CONTAINER"),
        result_topic=_entity(read, "RESULT_TOPIC"),
        client_subscription=_entity(read, "CLIENT_SUBSCRIPTION"),
        scoring_uri=_route_uri(read, model),
        scoring_key=read.optional(f"SCORING_KEY__{setting_suffix(model)}") or read.optional("SCORING_KEY"),
        scoring_deployment=read.optional(f"SCORING_DEPLOYMENT__{setting_suffix(model)}"),
        functions_url=read.url("FUNCTIONS_URL", DEFAULTS["FUNCTIONS_URL"]).rstrip("/"),
        functions_key=read.optional("FUNCTIONS_KEY"),
        max_input_bytes=read.integer("MAX_INPUT_BYTES", int(DEFAULTS["MAX_INPUT_BYTES"]), minimum=1),
    )


def _route_uri(read: SettingsReader, model: str) -> str | None:
    """Only the default route falls back to SCORING_URI; ``--scoring-uri`` wins for any route."""
    own = f"SCORING_URI__{setting_suffix(model)}"
    if read.optional("SCORING_URI") is not None and read.describe("SCORING_URI").endswith("(command line)"):
        return read.url("SCORING_URI").rstrip("/")
    if read.optional(own) is not None:
        return read.url(own).rstrip("/")
    if model != DEFAULT_MODEL:
        return None
    return read.url("SCORING_URI", DEFAULTS["SCORING_URI"]).rstrip("/")


def _storage(read: SettingsReader) -> StorageTarget:
    for name in (STORAGE, f"{STORAGE}__blobServiceUri", f"{STORAGE}__serviceUri"):
        value = read.optional(name)
        if value is None:
            continue
        if name == STORAGE:
            return parse_storage(value, read.describe(name))
        return StorageTarget(account_url=_url(value, read.describe(name)), source=read.describe(name))
    return StorageTarget(connection_string=LOCAL_STORAGE, source=f"{STORAGE} (default: local Azurite)")


def _servicebus(read: SettingsReader) -> ServiceBusTarget:
    value = read.optional(SERVICEBUS)
    if value is not None:
        return parse_servicebus(value, read.describe(SERVICEBUS))
    name = f"{SERVICEBUS}__fullyQualifiedNamespace"
    value = read.optional(name)
    if value is not None:
        if "=" in value:
            raise read.error(name, "expects a namespace host name, not a connection string")
        return parse_servicebus(value, read.describe(name))
    return ServiceBusTarget(connection_string=LOCAL_SERVICEBUS, source=f"{SERVICEBUS} (default: local emulator)")
