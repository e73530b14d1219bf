"""The client's ports: what the commands need from storage, Service Bus and HTTP, as small Protocols.

``client.azure_io`` and ``client.http_io`` implement them with the real SDKs; unit tests use hand-written fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class UploadedBlob:
    name: str
    etag: str
    size: int
    url: str


class InputStore(Protocol):
    def upload(
        self,
        path: Path,
        blob_name: str,
        metadata: dict[str, str],
        content_type: str,
        progress: Callable[[int], None],
    ) -> UploadedBlob:
        """Upload a local file (overwriting); ``progress`` gets the bytes sent so far."""
        ...


class Sink(Protocol):
    """Where downloaded bytes go (a file, or a wrapper that hashes on the way)."""

    def write(self, data: bytes, /) -> int: ...


class OutputFetcher(Protocol):
    def download(self, url: str, sink: Sink, final_name: str) -> None:
        """Write the blob at ``url`` (a results blob named in a result message) into ``sink``.

        The function app's writer deletes a staged results blob once it has written the final output, so
        when ``url`` is gone the final output ``final_name`` in the output container (the same bytes) is read.
        """
        ...


class ResultDelivery(Protocol):
    """One received result message, settled exactly once."""

    @property
    def body(self) -> bytes: ...

    def complete(self) -> None: ...

    def dead_letter(self, reason: str, description: str) -> None: ...


class ResultInbox(Protocol):
    def receive(self, max_wait: float) -> list[ResultDelivery]:
        """Messages of this session that arrived within ``max_wait`` seconds (possibly none)."""
        ...


# Opens the inbox of one session; used as ``with open_inbox(session_id) as inbox``.
InboxOpener = Callable[[str], AbstractContextManager[ResultInbox]]


class SyncScoringEndpoint(Protocol):
    def score(self, rows: list[dict[str, Any]]) -> Any:
        """POST ``{"data": rows}`` to the scoring URI; the decoded JSON answer."""
        ...


class StatusSource(Protocol):
    def get(self, request_id: str) -> dict[str, Any] | None:
        """The function app's record of one request, or None when it knows no such request."""
        ...
