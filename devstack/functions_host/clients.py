"""SDK clients built from resolved connections (connection string or identity), one per caller, never shared."""

from __future__ import annotations

from typing import Any

from azure.servicebus import ServiceBusClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from .settings import Connection

# Azurite's well-known development account (public, documented by Microsoft) for "UseDevelopmentStorage=true".
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_STORAGE = (
    f"DefaultEndpointsProtocol=http;AccountName={_DEV_ACCOUNT};AccountKey={_DEV_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{_DEV_ACCOUNT};QueueEndpoint=http://127.0.0.1:10001/{_DEV_ACCOUNT};"
)


def _storage_connection_string(value: str) -> str:
    if value.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
        return DEVELOPMENT_STORAGE
    return value


def credential_for(connection: Connection) -> Any:
    """The token credential an identity-style connection asks for (``__credential``/``__clientId``)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if (connection.credential or "").lower() == "managedidentity":
        return (
            ManagedIdentityCredential(client_id=connection.client_id)
            if connection.client_id
            else (ManagedIdentityCredential())
        )
    if connection.client_id:
        return DefaultAzureCredential(managed_identity_client_id=connection.client_id)
    return DefaultAzureCredential()


def blob_service(connection: Connection, **options: Any) -> BlobServiceClient:
    if connection.connection_string:
        return BlobServiceClient.from_connection_string(
            _storage_connection_string(connection.connection_string), **options
        )
    if not connection.service_uri:
        raise ValueError(
            f"connection '{connection.name}' has no blob service URI (set '{connection.name}__blobServiceUri')"
        )
    return BlobServiceClient(connection.service_uri, credential=credential_for(connection), **options)


def queue_service(connection: Connection) -> QueueServiceClient:
    if connection.connection_string:
        return QueueServiceClient.from_connection_string(_storage_connection_string(connection.connection_string))
    if not connection.queue_service_uri:
        raise ValueError(
            f"connection '{connection.name}' has no queue service URI (set '{connection.name}__queueServiceUri')"
        )
    return QueueServiceClient(connection.queue_service_uri, credential=credential_for(connection))


def servicebus(connection: Connection, **options: Any) -> ServiceBusClient:
    if connection.connection_string:
        return ServiceBusClient.from_connection_string(connection.connection_string, **options)
    if not connection.fully_qualified_namespace:
        raise ValueError(
            f"connection '{connection.name}' has no namespace (set '{connection.name}__fullyQualifiedNamespace')"
        )
    return ServiceBusClient(connection.fully_qualified_namespace, credential=credential_for(connection), **options)
