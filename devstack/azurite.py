"""Azurite's development account (public, documented by Microsoft) and connection strings for given ports."""

from __future__ import annotations

from devstack.ports import LOOPBACK

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
