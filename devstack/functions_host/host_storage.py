"""The host's own storage (``AzureWebJobsStorage``): container ``azure-webjobs-hosts`` for blob receipts and
timer schedule status, and the blob-trigger poison queue. Each caller builds its own clients from here."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient

from . import clients
from .settings import Connection, SettingsError, resolve_connection

logger = logging.getLogger(__name__)

HOSTS_CONTAINER = "azure-webjobs-hosts"
HOST_STORAGE_SETTING = "AzureWebJobsStorage"


def host_id(script_root: Path, environ: Mapping[str, str]) -> str:
    """``AzureFunctionsWebHost__hostid`` when set, else machine + app folder name (lower case, at most 32 chars)."""
    explicit = environ.get("AzureFunctionsWebHost__hostid") or environ.get("AzureFunctionsWebHost:hostid")
    if explicit:
        return explicit
    raw = f"{socket.gethostname()}-{script_root.resolve().name}".lower()
    return re.sub(r"[^a-z0-9-]", "", raw)[:32].strip("-") or "localhost"


def host_connection(environ: Mapping[str, str], required_by: str) -> Connection:
    try:
        return resolve_connection(HOST_STORAGE_SETTING, environ, required_by)
    except SettingsError as exc:
        raise SettingsError(f"{exc} ({required_by} keeps its state in the host storage account)") from None


def hosts_container(connection: Connection, **options: Any) -> ContainerClient:
    """A fresh client for ``azure-webjobs-hosts`` (created if missing); the caller owns and closes it. ``options``
    go to the client (e.g. ``retry_total``)."""
    container = clients.blob_service(connection, **options).get_container_client(HOSTS_CONTAINER)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    return container


def function_id(function_name: str) -> str:
    return f"Host.Functions.{function_name}"
