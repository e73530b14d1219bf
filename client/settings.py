"""Client settings: flags over environment over an optional local.settings.json, over local-stack defaults.

The names are the function app's (``DataStorage``, ``ServiceBus``, ``INPUT_CONTAINER``, ``RESULT_TOPIC``,
``SCORING_URI``...) plus client-only ones (``CLIENT_SUBSCRIPTION``, ``FUNCTIONS_URL``, ``FUNCTIONS_KEY``), so one
settings file can drive both. Identity-style settings (``DataStorage__blobServiceUri``,
``ServiceBus__fullyQualifiedNamespace``) select ``DefaultAzureCredential`` instead of a connection string.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from client.errors import ConfigError

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

# name -> (value, the setting it came from), or None when no source sets it
_Lookup = Callable[[str], tuple[str, str] | None]


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
    scoring_uri: str
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
    raise ConfigError(
        f"setting {source}: not a storage connection string (expected AccountName=...;AccountKey=... or "
        "BlobEndpoint=..., or UseDevelopmentStorage=true) nor a https:// blob service URL"
    )


def parse_servicebus(value: str, source: str) -> ServiceBusTarget:
    value = value.strip()
    if "=" not in value:
        host = urlparse(value).hostname if "://" in value else value.strip("/")
        if not host or "/" in host or " " in host:
            raise ConfigError(f"setting {source}: {value!r} is not a Service Bus namespace host name")
        return ServiceBusTarget(namespace=host, source=source)
    pairs = _pairs(value)
    endpoint = pairs.get("endpoint", "")
    if not endpoint.startswith("sb://"):
        raise ConfigError(f"setting {source}: connection string needs Endpoint=sb://<namespace>")
    if not ("sharedaccesskey" in pairs or "sharedaccesssignature" in pairs):
        raise ConfigError(f"setting {source}: connection string needs SharedAccessKeyName/SharedAccessKey")
    return ServiceBusTarget(connection_string=value, source=source)


def _url(value: str, name: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"setting {name}: {value!r} is not an http(s) URL")
    return value.rstrip("/")


def _positive_int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"setting {name}: {value!r} is not a whole number") from None
    if number <= 0:
        raise ConfigError(f"setting {name}: must be positive, got {number}")
    return number


def _name(value: str, name: str) -> str:
    if not value.strip() or "/" in value:
        raise ConfigError(f"setting {name}: {value!r} is not a valid entity name")
    return value.strip()


def read_settings_file(path: Path) -> dict[str, str]:
    """The ``Values`` of a local.settings.json (or a flat JSON object of settings)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"settings file {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"settings file {path}: not valid JSON ({exc})") from None
    values = data.get("Values", data) if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise ConfigError(f"settings file {path}: expected a JSON object with a 'Values' object")
    return {str(k): str(v) for k, v in values.items() if v is not None}


def load_settings(
    flags: Mapping[str, str | None],
    env: Mapping[str, str] | None = None,
    settings_file: Path | None = None,
) -> ClientSettings:
    """Resolve every setting once; ``flags`` maps setting names to command-line values (None = not given)."""
    environ = os.environ if env is None else env
    file_values = read_settings_file(settings_file) if settings_file is not None else {}

    def lookup(name: str) -> tuple[str, str] | None:
        """(value, where it came from) for the first source that sets ``name``."""
        flag = flags.get(name)
        if flag is not None:
            return flag, f"{name} (command line)"
        for source in (environ, file_values):
            value = source.get(name)
            if value is not None and value.strip():
                return value, name
        return None

    def get(name: str) -> str:
        found = lookup(name)
        return found[0] if found else DEFAULTS[name]

    def optional(name: str) -> str | None:
        found = lookup(name)
        return found[0] if found else None

    return ClientSettings(
        storage=_storage(lookup),
        servicebus=_servicebus(lookup),
        input_container=_name(get("INPUT_CONTAINER"), "INPUT_CONTAINER"),
        output_container=_name(get("OUTPUT_CONTAINER"), "OUTPUT_CONTAINER"),
        result_topic=_name(get("RESULT_TOPIC"), "RESULT_TOPIC"),
        client_subscription=_name(get("CLIENT_SUBSCRIPTION"), "CLIENT_SUBSCRIPTION"),
        scoring_uri=_url(get("SCORING_URI"), "SCORING_URI"),
        scoring_key=optional("SCORING_KEY"),
        scoring_deployment=optional("SCORING_DEPLOYMENT"),
        functions_url=_url(get("FUNCTIONS_URL"), "FUNCTIONS_URL"),
        functions_key=optional("FUNCTIONS_KEY"),
        max_input_bytes=_positive_int(get("MAX_INPUT_BYTES"), "MAX_INPUT_BYTES"),
    )


def _storage(lookup: _Lookup) -> StorageTarget:
    found = lookup(STORAGE)
    if found:
        return parse_storage(found[0], found[1])
    for suffix in ("__blobServiceUri", "__serviceUri"):
        found = lookup(STORAGE + suffix)
        if found:
            return StorageTarget(account_url=_url(found[0], found[1]), source=found[1])
    return StorageTarget(connection_string=LOCAL_STORAGE, source=f"{STORAGE} (default: local Azurite)")


def _servicebus(lookup: _Lookup) -> ServiceBusTarget:
    found = lookup(SERVICEBUS)
    if found:
        return parse_servicebus(found[0], found[1])
    found = lookup(SERVICEBUS + "__fullyQualifiedNamespace")
    if found:
        if "=" in found[0]:
            raise ConfigError(f"setting {found[1]}: expected a namespace host name, not a connection string")
        return parse_servicebus(found[0], found[1])
    return ServiceBusTarget(connection_string=LOCAL_SERVICEBUS, source=f"{SERVICEBUS} (default: local emulator)")
