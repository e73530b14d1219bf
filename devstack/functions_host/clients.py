"""SDK clients built from resolved connections (connection string or identity), one per caller, never shared."""

from __future__ import annotations

from functools import partial
from typing import Any

from azure.servicebus import ServiceBusClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from devstack import azurite
from shared.storage import blob_service_client

from .settings import Connection

# What "UseDevelopmentStorage=true" means: Azurite's development account on its default ports.
DEVELOPMENT_STORAGE = azurite.connection_string(azurite.DEFAULT_BLOB_PORT, azurite.DEFAULT_QUEUE_PORT)


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
        connection_string = _storage_connection_string(connection.connection_string)
        return blob_service_client(partial(BlobServiceClient.from_connection_string, connection_string, **options))
    if not connection.service_uri:
        raise ValueError(
            f"connection '{connection.name}' has no blob service URI (set '{connection.name}__blobServiceUri')"
        )
    credential = credential_for(connection)
    return blob_service_client(partial(BlobServiceClient, connection.service_uri, credential=credential, **options))


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
