"""Azurite's development account (public, documented by Microsoft), connection strings for given ports, and
the command that runs Azurite with SAS signatures blanked out of its access log."""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack.ports import LOOPBACK

# Node script that runs node_modules' Azurite with SAS signatures blanked out of its standard output
REDACTED_AZURITE = Path(__file__).with_name("azurite_redacted.js")

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_BLOB_PORT, DEFAULT_QUEUE_PORT, DEFAULT_TABLE_PORT = 10000, 10001, 10002


def endpoint(port: int) -> str:
    return f"http://{LOOPBACK}:{port}/{DEV_ACCOUNT}"


def connection_string(blob_port: int, queue_port: int, table_port: int | None = None) -> str:
    value = (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint={endpoint(blob_port)};QueueEndpoint={endpoint(queue_port)};"
    )
    return value if table_port is None else f"{value}TableEndpoint={endpoint(table_port)};"


def command() -> tuple[str, ...]:
    """Azurite run through :data:`REDACTED_AZURITE`; the caller adds Azurite's own options."""
    return (shutil.which("node") or "node", str(REDACTED_AZURITE))
