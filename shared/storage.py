"""Blob storage adapter (:class:`shared.ports.BlobStore`) over ``azure-storage-blob``.

One ``BlobServiceClient`` per thread (the Functions worker runs sync functions on a thread pool and the
brief forbids sharing SDK clients across threads). Read SAS URLs are signed with the account key when the
connection is a connection string, or with a user delegation key when it is an identity.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import unquote, urlparse

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import (
    BlobClient,
    BlobProperties,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)
from requests.utils import get_netrc_auth

from shared.config import Connection
from shared.limits import COPY_TIMEOUT_SECONDS
from shared.ports import BlobInfo, BlobNotFound, PreconditionFailed

logger = logging.getLogger(__name__)

_local = threading.local()
# Clock skew allowance for SAS start times and a floor for user delegation key lifetimes.
_SKEW = timedelta(minutes=5)
_COPY_POLL_SECONDS = 0.2
# A file's blobs are touched by one thread a few calls in a row (the writer reads the ledger record, then updates
# it); more kept clients are only more objects for the garbage collector to go through (about 45 each).
_BLOB_CLIENTS_PER_THREAD = 16
_IDLE_CLIENTS_PER_CONNECTION = 16
# Service clients of threads that have ended, for the next new thread (see _ThreadBlobClients).
_idle_clients: dict[Connection, list[BlobServiceClient]] = {}
_idle_lock = threading.Lock()
# Accounts whose service answered 501 to Put Blob From URL (Azurite); written once, read by all threads.
_PUT_FROM_URL: dict[str, bool] = {}


def credential_for(connection: Connection) -> TokenCredential:
    """ManagedIdentityCredential for a named user-assigned identity, else DefaultAzureCredential."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if connection.client_id:
        return ManagedIdentityCredential(client_id=connection.client_id)
    return DefaultAzureCredential()


def environment_applies(url: str) -> bool:
    """Whether the environment could change a request to ``url``: proxy variables, a CA bundle variable (for
    https), or a ``.netrc`` entry for its host.

    ``requests`` looks all three up again on every request (its ``trust_env``), which costs more CPU than the
    rest of its work on a small request; a client for which none applies is built without those look-ups
    (azure-core's ``use_env_settings=False``). The environment is read when the client is built.
    """
    https = url.lower().startswith("https:")
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return bool(urllib.request.getproxies() or (https and bundle) or get_netrc_auth(url))


def _total_size(content_range: str | None) -> int:
    """The blob's size from a ranged answer's ``bytes <first>-<last>/<size>`` (the SDK refuses an answer without
    one; the range's own size would be the wrong one)."""
    if content_range is None:
        raise ValueError("a ranged read came back without Content-Range")
    return int(content_range.rpartition("/")[2])


def _info(name: str, blob: BlobClient, props: BlobProperties, size: int) -> BlobInfo:
    return BlobInfo(name=name, url=blob.url, etag=props.etag, size=size, metadata=dict(props.metadata),
                    created_at=props.creation_time)  # fmt: skip


def blob_service_client(make: Callable[..., BlobServiceClient]) -> BlobServiceClient:
    """``make(**options)``, without the transport's per-request environment look-ups where none applies."""
    client = make()
    if environment_applies(client.url):
        return client
    client.close()
    return make(use_env_settings=False)


class _ThreadBlobClients:
    """One thread's service clients. When the thread ends they are kept for the next thread that needs one, so
    the threads of a short-lived pool reuse clients and their open connections; a client still serves one
    thread at a time."""

    def __init__(self) -> None:
        self.clients: dict[Connection, BlobServiceClient] = {}
        weakref.finalize(self, _hand_back, self.clients).atexit = False


def _hand_back(clients: dict[Connection, BlobServiceClient]) -> None:
    surplus: list[BlobServiceClient] = []
    with _idle_lock:
        for connection, client in clients.items():
            idle = _idle_clients.setdefault(connection, [])
            (idle if len(idle) < _IDLE_CLIENTS_PER_CONNECTION else surplus).append(client)
    for client in surplus:
        client.close()


def service_client(connection: Connection) -> BlobServiceClient:
    """This thread's client for ``connection`` (one a finished thread left, else a new one)."""
    mine: _ThreadBlobClients | None = getattr(_local, "mine", None)
    if mine is None:
        mine = _local.mine = _ThreadBlobClients()
    client = mine.clients.get(connection)
    if client is None:
        with _idle_lock:
            idle = _idle_clients.get(connection)
            client = idle.pop() if idle else None
        if client is None:
            if connection.connection_string is not None:
                make = partial(BlobServiceClient.from_connection_string, connection.connection_string)
            else:
                make = partial(BlobServiceClient, str(connection.service_uri), credential=credential_for(connection))
            client = blob_service_client(make)
        mine.clients[connection] = client
    return client


def blob_client(connection: Connection, container: str, name: str) -> BlobClient:
    """This thread's client for one blob, kept for the next calls on the same blob (building a ``BlobClient``
    builds its generated client's configuration and serializers anew)."""
    blobs: OrderedDict[tuple[Connection, str, str], BlobClient] | None = getattr(_local, "blobs", None)
    if blobs is None:
        blobs = _local.blobs = OrderedDict()
    key = (connection, container, name)
    blob = blobs.get(key)
    if blob is None:
        blob = blobs[key] = service_client(connection).get_blob_client(container, name)
        while len(blobs) > _BLOB_CLIENTS_PER_THREAD:
            blobs.popitem(last=False)
    else:
        blobs.move_to_end(key)
    return blob


class AzureBlobStore:
    """BlobStore on one storage account; cheap to create, holds no client itself."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_expiry: datetime | None = None

    @property
    def _service(self) -> BlobServiceClient:
        return service_client(self._connection)

    def _blob(self, container: str, name: str) -> BlobClient:
        return blob_client(self._connection, container, name)

    def url(self, container: str, name: str) -> str:
        return str(self._blob(container, name).url)

    def properties(self, container: str, name: str) -> BlobInfo:
        blob = self._blob(container, name)
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError as exc:
            raise BlobNotFound(f"{container}/{name}") from exc
        return _info(name, blob, props, props.size)

    def peek(self, container: str, name: str, max_bytes: int) -> tuple[BlobInfo, bytes | None]:
        blob = self._blob(container, name)
        try:
            downloader = blob.download_blob(offset=0, length=max_bytes, max_concurrency=1)
        except ResourceNotFoundError as exc:
            raise BlobNotFound(f"{container}/{name}") from exc
        except HttpResponseError as exc:
            if exc.status_code == 416:  # an empty blob has no first byte to read
                return self.properties(container, name), b""
            raise
        # The range's own size is at most max_bytes: the blob's size is the total in its Content-Range.
        size = _total_size(downloader.properties.content_range)
        # The first answer holds the whole range (far under the SDK's single-get size): no further request.
        return _info(name, blob, downloader.properties, size), downloader.readall() if size <= max_bytes else None

    def read(self, container: str, name: str) -> tuple[bytes, str]:
        blob = self._blob(container, name)
        try:
            downloader = blob.download_blob()
            return downloader.readall(), str(downloader.properties.etag)
        except ResourceNotFoundError as exc:
            raise BlobNotFound(f"{container}/{name}") from exc

    def write(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match_any: bool = False,
    ) -> str:
        blob = self._blob(container, name)
        # The SDK forwards unknown keywords to the transport, so conditions are passed only when set.
        conditions: dict[str, Any] = {}
        if if_match is not None:
            conditions = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        elif if_none_match_any:
            conditions = {"match_condition": MatchConditions.IfMissing}
        try:
            result = blob.upload_blob(
                data,
                overwrite=True,
                metadata=dict(metadata or {}),
                content_settings=ContentSettings(content_type=content_type),
                **conditions,
            )
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise PreconditionFailed(f"{container}/{name}") from exc
        except ResourceNotFoundError as exc:
            raise BlobNotFound(f"{container}/{name}") from exc
        return str(result["etag"])

    def set_metadata(self, container: str, name: str, metadata: Mapping[str, str], *, if_match: str) -> str:
        blob = self._service.get_blob_client(container, name)
        try:
            result = blob.set_blob_metadata(
                dict(metadata), etag=if_match, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError as exc:
            raise PreconditionFailed(f"{container}/{name}") from exc
        except ResourceNotFoundError as exc:
            raise BlobNotFound(f"{container}/{name}") from exc
        return str(result["etag"])

    def copy_from_url(
        self, source_url: str, container: str, name: str, *, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        source_url = self._own_source(source_url)
        blob = self._blob(container, name)
        if _PUT_FROM_URL.get(self._service.url, True):
            try:
                # Put Blob From URL: synchronous and atomic (the target changes only when the copy is done).
                blob.upload_blob_from_url(
                    source_url,
                    overwrite=True,
                    metadata=dict(metadata),
                    content_settings=ContentSettings(content_type=content_type),
                )
                return
            except ResourceNotFoundError as exc:
                raise BlobNotFound(source_url.split("?")[0]) from exc
            except HttpResponseError as exc:
                if exc.status_code != 501:
                    raise
                # Azurite does not implement Put Blob From URL; its Copy Blob completes at once.
                logger.info("Put Blob From URL not supported by this service; using Copy Blob")
                _PUT_FROM_URL[self._service.url] = False
        self._copy_blob(blob, source_url, content_type, metadata)

    def _copy_blob(self, blob: BlobClient, source_url: str, content_type: str, metadata: Mapping[str, str]) -> None:
        try:
            blob.start_copy_from_url(source_url, metadata=dict(metadata), requires_sync=None)
        except ResourceNotFoundError as exc:
            raise BlobNotFound(source_url.split("?")[0]) from exc
        deadline = datetime.now(UTC) + timedelta(seconds=COPY_TIMEOUT_SECONDS)
        while True:
            props = blob.get_blob_properties()
            status = props.copy.status
            if status == "success" or status is None:
                break
            if status != "pending" or datetime.now(UTC) > deadline:
                blob.delete_blob()
                raise RuntimeError(f"copy to {blob.url} ended as {status}: {props.copy.status_description}")
            threading.Event().wait(_COPY_POLL_SECONDS)
        blob.set_http_headers(content_settings=ContentSettings(content_type=content_type))

    def _own_source(self, source_url: str) -> str:
        """The source as a URL of this account's blob (rebuilt from its container and name), keeping the SAS it
        came with or signing a read SAS; a URL of any other account or host is refused."""
        located = self.locate(source_url)
        if located is None:
            raise ValueError(f"copy source {source_url.split('?')[0]} is not a blob of this storage account")
        query = urlparse(source_url).query
        if not query:
            return self.read_sas_url(*located, timedelta(minutes=30))
        return f"{self.url(*located)}?{query}"

    def locate(self, url: str) -> tuple[str, str] | None:
        parsed, ours = urlparse(url), urlparse(self._service.url)
        prefix = ours.path.rstrip("/") + "/"
        if (parsed.scheme, parsed.netloc) != (ours.scheme, ours.netloc) or not parsed.path.startswith(prefix):
            return None
        container, _, name = parsed.path[len(prefix) :].partition("/")
        return (container, unquote(name)) if container and name else None

    def delete(self, container: str, name: str, *, if_match: str | None = None) -> None:
        conditions: dict[str, Any] = {}
        if if_match is not None:
            conditions = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        try:
            self._blob(container, name).delete_blob(**conditions)
        except ResourceNotFoundError:
            logger.debug("delete: %s/%s was already gone", container, name)
        except ResourceModifiedError as exc:
            raise PreconditionFailed(f"{container}/{name}") from exc

    def list(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        client = self._service.get_container_client(container)
        for item in client.list_blobs(name_starts_with=prefix, include=["metadata"]):
            yield BlobInfo(
                name=item.name,
                url=f"{client.url}/{item.name}",
                etag=item.etag,
                size=item.size,
                metadata=dict(item.metadata or {}),
            )

    def read_sas_url(self, container: str, name: str, ttl: timedelta) -> str:
        blob = self._blob(container, name)
        now = datetime.now(UTC)
        start, expiry = now - _SKEW, now + ttl
        common: dict[str, object] = {
            "account_name": self._service.account_name,
            "container_name": container,
            "blob_name": name,
            "permission": BlobSasPermissions(read=True),
            "start": start,
            "expiry": expiry,
            "protocol": "https" if blob.url.startswith("https") else "https,http",
        }
        if self._connection.connection_string is not None:
            credential = self._service.credential
            account_key = getattr(credential, "account_key", None)
            if not account_key:
                raise RuntimeError(f"connection {self._connection.name} has no account key to sign a SAS with")
            sas = generate_blob_sas(account_key=account_key, **common)  # type: ignore[arg-type]
        else:
            sas = generate_blob_sas(user_delegation_key=self._user_delegation_key(expiry), **common)  # type: ignore[arg-type]
        return f"{blob.url}?{sas}"

    def _user_delegation_key(self, needed_until: datetime) -> UserDelegationKey:
        if self._delegation_key is None or self._delegation_expiry is None or self._delegation_expiry < needed_until:
            now = datetime.now(UTC)
            expiry = max(needed_until, now + timedelta(hours=1))
            self._delegation_key = self._service.get_user_delegation_key(now - _SKEW, expiry)
            self._delegation_expiry = expiry
        return self._delegation_key
