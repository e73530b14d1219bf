"""Where the scored output goes while it is produced: memory up to the inline limit, then a block blob.

Output bytes are hashed as they arrive. As long as the total stays within ``inline_max`` they are kept
in memory and travel inline in the result message. The first write that crosses the limit opens the
results blob (``<request_id>/<attempt>/<input_name>``) and from then on full blocks are staged by a
few background threads while the caller keeps predicting (a bounded hand-over queue caps memory at a
few blocks; block ids are numbered at hand-over, so the commit keeps the order whatever thread staged
a block); :meth:`OutputSink.finish` stages the remainder and commits the block list. Nothing becomes
visible in the container before that commit, so a failed request leaves no partial output.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

BLOCK_BYTES = 4 * 1024 * 1024
_UPLOADERS = 3  # parallel stage_block calls: one request's latency no longer bounds the upload rate
# Blocks in flight (queued + being staged) are what the output side holds: a few chunks' worth, whatever
# the output's size.
_PENDING_BLOCKS = 1


class BlockWriter(Protocol):
    """Our port to the results blob (implemented with azure-storage-blob in ``results_store``)."""

    def stage(self, block_id: str, data: bytes) -> None: ...

    def commit(self, block_ids: list[str], content_type: str) -> None: ...

    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class SinkOutcome:
    size: int
    sha256: str
    inline: bytes | None  # the output itself when it stayed within the inline limit
    blob_url: str | None


class OutputSink:
    def __init__(self, inline_max: int, open_blob: Callable[[], BlockWriter], content_type: str) -> None:
        self._inline_max = inline_max
        self._open_blob = open_blob
        self._content_type = content_type
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._blob: BlockWriter | None = None
        self._block_ids: list[str] = []
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(_PENDING_BLOCKS)
        self._uploaders: list[threading.Thread] = []
        self._error: BaseException | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._raise_upload_error()
        self._hash.update(data)
        self._size += len(data)
        self._buffer += data
        if self._blob is None and self._size > self._inline_max:
            self._blob = self._open_blob()
            self._uploaders = [
                threading.Thread(target=self._upload, name=f"results-upload-{i}", daemon=True)
                for i in range(_UPLOADERS)
            ]
            for thread in self._uploaders:
                thread.start()
        if self._blob is not None:
            while len(self._buffer) >= BLOCK_BYTES:
                with memoryview(self._buffer) as view:
                    block = bytes(view[:BLOCK_BYTES])
                del self._buffer[:BLOCK_BYTES]
                self._hand_over(block)

    def _hand_over(self, block: bytes) -> None:
        block_id = base64.b64encode(f"{len(self._block_ids):08d}".encode()).decode()
        self._block_ids.append(block_id)
        while True:
            self._raise_upload_error()
            try:
                self._queue.put((block_id, block), timeout=0.5)
                return
            except queue.Full:
                continue

    def _upload(self) -> None:
        assert self._blob is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain without uploading once something failed
            try:
                self._blob.stage(*item)
            except Exception as exc:  # noqa: BLE001 - handed to the producer thread, which raises it
                self._error = exc

    def _raise_upload_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop_uploader(self) -> None:
        for _ in self._uploaders:
            self._queue.put(None)
        for thread in self._uploaders:
            thread.join()
        self._uploaders = []

    def abort(self) -> None:
        """Stop the upload thread without committing (uncommitted blocks expire on their own)."""
        self._error = self._error or RuntimeError("aborted")
        self._stop_uploader()

    def finish(self) -> SinkOutcome:
        digest = self._hash.hexdigest()
        if self._blob is None:
            return SinkOutcome(self._size, digest, bytes(self._buffer), None)
        if self._buffer:
            self._hand_over(bytes(self._buffer))
            self._buffer.clear()
        self._stop_uploader()
        self._raise_upload_error()
        self._blob.commit(self._block_ids, self._content_type)
        return SinkOutcome(self._size, digest, None, self._blob.url)
