"""The client's ports implemented with the real Azure SDKs (blob storage and Service Bus).

Each object owns its SDK client and is used from one thread only (the SDK clients are not thread-safe).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusReceiver
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusError,
    SessionCannotBeLockedError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings, ExponentialRetry

from client.errors import ServiceError
from client.ports import ResultDelivery, Sink, UploadedBlob
from client.settings import ServiceBusTarget, StorageTarget
from shared.retry import CLIENT_STORAGE

logger = logging.getLogger(__name__)

UPLOAD_CONCURRENCY = 4
SESSION_RENEW_MARGIN = timedelta(seconds=20)


def _credential() -> Any:
    from azure.identity import DefaultAzureCredential  # imported only when identity is configured

    return DefaultAzureCredential()


def blob_service(target: StorageTarget) -> BlobServiceClient:
    # The SDK's default backoff (15 s, then longer) leaves a user staring at a silent terminal for a minute
    # when storage is down; a CLI retries a few times quickly and then says so.
    options: dict[str, Any] = {
        "retry_policy": ExponentialRetry(**CLIENT_STORAGE.sdk_exponential()),
        "connection_timeout": 10,
    }
    if target.connection_string is not None:
        return BlobServiceClient.from_connection_string(target.connection_string, **options)
    return BlobServiceClient(account_url=str(target.account_url), credential=_credential(), **options)


def servicebus_client(target: ServiceBusTarget) -> ServiceBusClient:
    if target.connection_string is not None:
        return ServiceBusClient.from_connection_string(target.connection_string)
    return ServiceBusClient(fully_qualified_namespace=str(target.namespace), credential=_credential())


def _short(exc: BaseException) -> str:
    """The first line of an SDK error message (they can run to pages)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class BlobInputStore:
    """Uploads input files to the input container (which must exist: the deployment creates it)."""

    def __init__(self, target: StorageTarget, container: str) -> None:
        self._target, self._container = target, container
        self._service = blob_service(target)

    def upload(
        self,
        path: Path,
        blob_name: str,
        metadata: dict[str, str],
        content_type: str,
        progress: Callable[[int], None],
    ) -> UploadedBlob:
        blob = self._service.get_blob_client(self._container, blob_name)
        try:
            with path.open("rb") as handle:
                answer = blob.upload_blob(
                    handle,
                    overwrite=True,
                    metadata=metadata,
                    content_settings=ContentSettings(content_type=content_type),
                    max_concurrency=UPLOAD_CONCURRENCY,
                    progress_hook=lambda done, _total: progress(done),
                )
        except ResourceNotFoundError:
            raise ServiceError(
                f"container {self._container!r} does not exist in {self._service.url} "
                f"(setting INPUT_CONTAINER, storage from {self._target.source})"
            ) from None
        except AzureError as exc:
            raise ServiceError(
                f"cannot upload to {self._service.url} (storage from {self._target.source}): {_short(exc)}"
            ) from None
        return UploadedBlob(name=blob_name, etag=str(answer["etag"]), size=path.stat().st_size, url=blob.url)


class BlobOutputFetcher:
    """Downloads a results blob named in a result message: with our storage credential when the URL is in our
    account, otherwise as given (a SAS URL) or with ``DefaultAzureCredential``."""

    def __init__(self, target: StorageTarget, output_container: str) -> None:
        self._target = target
        self._service = blob_service(target)
        self._output_container = output_container

    def _client(self, url: str) -> BlobClient:
        own = self._service.url.rstrip("/") + "/"
        if url.startswith(own):
            container, _, name = url[len(own) :].split("?", 1)[0].partition("/")
            return self._service.get_blob_client(unquote(container), unquote(name))
        has_sas = "sig=" in url.partition("?")[2]
        return BlobClient.from_blob_url(url, credential=None if has_sas else _credential())

    def download(self, url: str, sink: Sink, final_name: str) -> None:
        # download_blob() fails before any byte reaches the sink when the blob is gone.
        try:
            stream = self._client(url).download_blob()
        except ResourceNotFoundError:
            logger.debug("staged output %s is gone; reading the final output %s", url, final_name)
            stream = self._service.get_blob_client(self._output_container, final_name).download_blob()
        # Chunk by chunk in order: the sink hashes as it writes, so it cannot take parallel (seeking) writes.
        for chunk in stream.chunks():
            sink.write(chunk)


class _SessionDelivery:
    def __init__(self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
        self._receiver, self._message = receiver, message

    @property
    def body(self) -> bytes:
        return b"".join(bytes(part) for part in self._message.body)

    def complete(self) -> None:
        self._receiver.complete_message(self._message)

    def dead_letter(self, reason: str, description: str) -> None:
        self._receiver.dead_letter_message(self._message, reason=reason, error_description=description)


class SessionInbox:
    """Receives one session's messages from a session-enabled subscription, renewing the session lock."""

    def __init__(self, receiver: ServiceBusReceiver, error: Callable[[ServiceBusError], ServiceError]) -> None:
        self._receiver, self._error = receiver, error

    def receive(self, max_wait: float) -> list[ResultDelivery]:
        try:
            self._renew_if_due()
            messages = self._receiver.receive_messages(max_message_count=20, max_wait_time=max(max_wait, 0.1))
        except ServiceBusError as exc:
            raise self._error(exc) from None
        return [_SessionDelivery(self._receiver, m) for m in messages]

    def _renew_if_due(self) -> None:
        session = self._receiver.session
        locked_until = session.locked_until_utc
        if locked_until is not None and locked_until - datetime.now(UTC) < SESSION_RENEW_MARGIN:
            session.renew_lock()


def _bus_error(exc: ServiceBusError, where: str, session_id: str, target: ServiceBusTarget) -> ServiceError:
    """One line that says which setting or situation to look at."""
    if isinstance(exc, SessionCannotBeLockedError):
        return ServiceError(
            f"session {session_id!r} on {where} is held by another receiver (another client waiting on it?); "
            "wait for it to finish or use another --session"
        )
    if isinstance(exc, MessagingEntityNotFoundError):
        return ServiceError(f"{where} does not exist (settings RESULT_TOPIC / CLIENT_SUBSCRIPTION)")
    if isinstance(exc, (ServiceBusAuthenticationError, ServiceBusAuthorizationError)):
        return ServiceError(f"Service Bus refused the credentials for {where} (setting {target.source})")
    return ServiceError(f"cannot receive from {where}: {_short(exc)}")


@contextmanager
def open_session_inbox(
    target: ServiceBusTarget, topic: str, subscription: str, session_id: str
) -> Iterator[SessionInbox]:
    where = f"topic {topic!r} subscription {subscription!r} (Service Bus from {target.source})"
    client = servicebus_client(target)
    try:
        with client, client.get_subscription_receiver(topic, subscription, session_id=session_id) as receiver:
            yield SessionInbox(receiver, lambda exc: _bus_error(exc, where, session_id, target))
    except ServiceBusError as exc:
        raise _bus_error(exc, where, session_id, target) from None
