"""Ports: the small interfaces the use cases need from blob storage, the message bus and the scoring endpoint.

Adapters for Azure live in ``storage.py``, ``bus.py`` and ``endpoint.py``; unit tests pass hand-written fakes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol


class PreconditionFailed(Exception):
    """A conditional write lost: the blob changed (ETag mismatch) or already exists."""


class BlobNotFound(Exception):
    """The blob (or its container) does not exist."""


@dataclass(frozen=True)
class BlobInfo:
    name: str
    url: str
    etag: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None  # when the blob was created (an input: when it was uploaded)


def properties_or_none(blobs: BlobStore, container: str, name: str) -> BlobInfo | None:
    """``blobs.properties``, or None where the blob does not exist."""
    try:
        return blobs.properties(container, name)
    except BlobNotFound:
        return None


class BlobStore(Protocol):
    def properties(self, container: str, name: str) -> BlobInfo:
        """Raises BlobNotFound."""
        ...

    def peek(self, container: str, name: str, max_bytes: int) -> tuple[BlobInfo, bytes | None]:
        """The blob's properties and, when it holds at most ``max_bytes``, its whole content (else None), in one
        request; raises BlobNotFound."""
        ...

    def read(self, container: str, name: str) -> tuple[bytes, str]:
        """Content and ETag; raises BlobNotFound."""
        ...

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
        """Writes the whole blob in one commit and returns its new ETag; raises PreconditionFailed."""
        ...

    def set_metadata(self, container: str, name: str, metadata: Mapping[str, str], *, if_match: str) -> str:
        """Replaces the blob's metadata (content untouched) if it is still that version; returns the new ETag.
        Raises PreconditionFailed (which storage may also answer when the blob is gone), or BlobNotFound."""
        ...

    def copy_from_url(
        self, source_url: str, container: str, name: str, *, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Server-side copy of a whole blob of this account (the target appears only when complete); raises
        BlobNotFound, or ValueError for a source of any other account or host."""
        ...

    def locate(self, url: str) -> tuple[str, str] | None:
        """(container, name) of a blob URL of this account (its query ignored); None for any other URL."""
        ...

    def delete(self, container: str, name: str, *, if_match: str | None = None) -> None:
        """Deletes if present; with ``if_match`` only that version (else raises PreconditionFailed, which
        storage may also answer when the blob is already gone)."""
        ...

    def list(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        """Blobs under ``prefix`` with their metadata, in one listing (no per-blob requests)."""
        ...

    def read_sas_url(self, container: str, name: str, ttl: timedelta) -> str:
        """A read-only, short-lived URL for one blob."""
        ...

    def url(self, container: str, name: str) -> str: ...


@dataclass(frozen=True)
class OutgoingMessage:
    body: bytes
    message_id: str
    session_id: str | None = None
    application_properties: Mapping[str, str | int] = field(default_factory=dict)
    content_type: str = "application/json"
    subject: str | None = None


class MessageBus(Protocol):
    def publish(self, topic: str, message: OutgoingMessage) -> None: ...

    def schedule(self, topic: str, message: OutgoingMessage, at: datetime) -> None:
        """Enqueue ``message`` so it becomes visible at ``at`` (UTC)."""
        ...


TRANSIENT_STATUSES = frozenset({0, 408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class EndpointReply:
    """What the endpoint answered; ``status`` 0 means no HTTP answer (connection error or timeout)."""

    status: int
    body: str = ""
    retry_after_seconds: float | None = None

    @property
    def transient(self) -> bool:
        """Throttled or unreachable: worth trying again later (:mod:`shared.retry`)."""
        return self.status in TRANSIENT_STATUSES


class ScoringEndpoint(Protocol):
    def post(self, body: bytes) -> EndpointReply: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
