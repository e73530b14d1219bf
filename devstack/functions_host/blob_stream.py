"""A ``func.blob.InputStream`` whose bytes are downloaded only when the function reads them.

The download is pinned to the ETag the trigger saw, streams in chunks through a buffered reader, and never
starts for functions that only look at ``name``, ``length``, ``uri`` or ``metadata``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from azure.core import MatchConditions
from azure.functions.blob import InputStream
from azure.storage.blob import BlobClient

_BUFFER = 1024 * 1024


class _BlobRaw(io.RawIOBase):
    def __init__(self, blob: BlobClient, etag: str | None) -> None:
        self._blob = blob
        self._etag = etag
        self._chunks: Iterator[bytes] | None = None
        self._pending = memoryview(b"")
        self.downloads_started = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        while not self._pending:
            if self._chunks is None:
                self.downloads_started += 1
                conditions: dict[str, Any] = {}
                if self._etag:
                    conditions = {"etag": self._etag, "match_condition": MatchConditions.IfNotModified}
                self._chunks = self._blob.download_blob(max_concurrency=1, **conditions).chunks()
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


class LazyBlobInputStream(InputStream):
    def __init__(
        self,
        *,
        blob: BlobClient,
        etag: str | None,
        name: str,
        uri: str,
        length: int | None,
        blob_properties: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
    ) -> None:
        super().__init__(
            data=b"", name=name, uri=uri, length=length, blob_properties=blob_properties, metadata=metadata
        )
        self._raw = _BlobRaw(blob, etag)
        self._io = io.BufferedReader(self._raw, buffer_size=_BUFFER)  # type: ignore[assignment]

    @property
    def download_started(self) -> bool:
        return self._raw.downloads_started > 0

    def read(self, size: int | None = -1) -> bytes:
        return self._io.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self._io.read1(size)

    def readinto(self, buffer: Any) -> int:
        return self._io.readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        return self._io.readline(-1 if size is None else size)

    def peek(self, size: int = 0) -> bytes:
        return self._io.peek(size)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._io)

    def close(self) -> None:
        self._io.close()
        super().close()
