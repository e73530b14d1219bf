"""Reading an input blob as a stream of record-aligned chunks, with size and decompression limits.

``blob_pieces`` downloads the blob piece by piece (the SDK's chunked download, never the whole blob in
memory), ``inline_pieces`` stands in for it when the request carried a small input's bytes,
``decompressed`` inflates gzip incrementally and stops at ``max_data_bytes`` (the gzip-bomb guard), and
``record_chunks`` regroups the bytes into chunks of about ``chunk_bytes`` that end on a record boundary.
For CSV a newline inside a quoted field is not a boundary: a cut is only made at a newline preceded by an
even number of quote characters (RFC 4180 escapes a quote by doubling it, so the parity tells whether we
are inside a quoted field).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator

import numpy as np
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient

from scoring.service.errors import ScoringError
from shared.contracts import GZIP, ErrorCode

logger = logging.getLogger(__name__)

_NEWLINE = 10
_QUOTE = 34
_DOWNLOAD_CONCURRENCY = 2


def _describe_storage_error(exc: HttpResponseError) -> ScoringError:
    status = exc.status_code
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return ScoringError(ErrorCode.BLOB_NOT_FOUND, "the input blob does not exist (or its container does not)")
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        code = getattr(exc, "error_code", None) or status
        return ScoringError(ErrorCode.BLOB_FORBIDDEN, f"access to the input blob was refused ({code}); check the SAS")
    if status is not None and 300 <= status < 400:
        return ScoringError(
            ErrorCode.BLOB_URL_NOT_ALLOWED,
            f"the input's storage answered with a redirect (HTTP {status}); the scoring service follows none",
        )
    if status is not None and (status >= 500 or status in (408, 429)):
        return ScoringError(ErrorCode.INPUT_UNAVAILABLE, f"reading the input blob failed with HTTP {status}")
    return ScoringError(ErrorCode.INTERNAL, f"reading the input blob failed with HTTP {status}")


def blob_pieces(blob: BlobClient, max_input_bytes: int) -> Iterator[bytes]:
    """The blob's bytes in the SDK's download chunks; refuses blobs over ``max_input_bytes`` before reading.

    Closes ``blob`` (its HTTP session) when the pieces are exhausted or the generator is closed.
    """
    try:
        downloader = blob.download_blob(max_concurrency=_DOWNLOAD_CONCURRENCY)
        _check_size(downloader.size, max_input_bytes)
        received = 0
        for piece in downloader.chunks():
            received += len(piece)
            if received > max_input_bytes:  # the blob grew while we read it
                raise ScoringError(ErrorCode.TOO_LARGE, f"the input exceeds the limit of {max_input_bytes} bytes")
            yield piece
    except HttpResponseError as exc:
        raise _describe_storage_error(exc) from exc
    except AzureError as exc:  # connection refused, reset or timed out after the SDK's retries
        raise ScoringError(
            ErrorCode.INPUT_UNAVAILABLE,
            f"could not read the input blob: its storage did not answer ({type(exc).__name__})",
        ) from exc
    finally:
        blob.close()


def inline_pieces(data: bytes, max_input_bytes: int) -> Iterator[bytes]:
    """The input the request carried, under the same limit as a blob's."""
    _check_size(len(data), max_input_bytes)
    if data:
        yield data


def _check_size(size: int, max_input_bytes: int) -> None:
    if size > max_input_bytes:
        raise ScoringError(ErrorCode.TOO_LARGE, f"the input is {size} bytes; the limit is {max_input_bytes} bytes")


def decompressed(pieces: Iterable[bytes], compression: str | None, max_data_bytes: int) -> Iterator[bytes]:
    """Inflate gzip pieces (or pass plain ones through), never holding more than one piece's output."""
    total = 0

    def counted(data: bytes) -> bytes:
        nonlocal total
        total += len(data)
        if total > max_data_bytes:
            raise ScoringError(
                ErrorCode.TOO_LARGE,
                f"the input expands to more than {max_data_bytes} bytes (limit after decompression)",
            )
        return data

    if compression is None:
        for piece in pieces:
            yield counted(piece)
        return
    if compression != GZIP:
        raise ScoringError(ErrorCode.UNSUPPORTED_FORMAT, f"unsupported compression {compression!r}")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    step = 4 * 1024 * 1024
    try:
        for piece in pieces:
            data = piece
            while data:
                # max_length bounds the output per call, so a small piece cannot explode in memory.
                out = inflater.decompress(data, step)
                if out:
                    yield counted(out)
                data = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:
                    # Concatenated gzip members: start a new inflater on what is left.
                    data = inflater.unused_data
                    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        tail = inflater.flush()
        if tail:
            yield counted(tail)
    except zlib.error as exc:
        raise ScoringError(ErrorCode.UNDECODABLE, f"the input is not valid gzip data ({exc})") from exc
    if not inflater.eof and total:
        raise ScoringError(ErrorCode.UNDECODABLE, "the gzip stream is truncated")


def _cut(buffer: bytearray, quotes: bool) -> int:
    """Index just after the last record boundary in ``buffer`` (0 if there is none)."""
    last = buffer.rfind(b"\n")
    if last < 0:
        return 0
    if not quotes or buffer.find(b'"', 0, last) < 0:
        return last + 1
    view = np.frombuffer(buffer, dtype=np.uint8, count=last + 1)
    inside = np.cumsum(view == _QUOTE) % 2 == 1
    newlines = np.flatnonzero((view == _NEWLINE) & ~inside)
    return int(newlines[-1]) + 1 if len(newlines) else 0


def record_chunks(pieces: Iterable[bytes], *, chunk_bytes: int, max_record_bytes: int, quotes: bool) -> Iterator[bytes]:
    """Chunks of whole records, each ending with a newline (one is added to the last record if missing)."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) < chunk_bytes:
            continue
        cut = _cut(buffer, quotes)
        if cut == 0:
            if len(buffer) > chunk_bytes + max_record_bytes:
                raise ScoringError(
                    ErrorCode.MALFORMED_DATA,
                    f"found no record boundary in {len(buffer)} bytes; records are limited to {max_record_bytes} bytes",
                )
            continue
        with memoryview(buffer) as view:
            chunk = bytes(view[:cut])  # one copy (slicing the bytearray itself would make two)
        del buffer[:cut]
        yield chunk
    if buffer.strip():
        if not buffer.endswith(b"\n"):
            buffer += b"\n"
        yield bytes(buffer)
