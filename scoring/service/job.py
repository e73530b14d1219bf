"""Scoring one async request: stream the input blob, score chunk by chunk, and build the InferenceResult.

Three stages overlap: a reader thread downloads, inflates and cuts the blob into record-aligned chunks
(handing them over through a queue of two, so memory stays bounded whatever the input size), the job's
own thread validates and predicts, and the output sink's thread stages finished blocks to the results
blob. Input problems end as a failed result with a stable ErrorCode; bad rows are left out, counted and
the first few reported; a file without a single good row fails with ``no_valid_rows``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from scoring.service.chunk import ChunkResult
from scoring.service.errors import ScoringError
from scoring.service.formats import record_format
from scoring.service.heap import release_unused
from scoring.service.model import ScoringModel
from scoring.service.settings import ScoringSettings
from scoring.service.sink import BlockWriter, OutputSink
from scoring.service.source import blob_pieces, decompressed, inline_pieces
from scoring.service.storage import InputBlobs, redact
from scoring.service.tracing import JobClocks
from scoring.service.validation import Validator
from shared.contracts import (
    GZIP,
    INLINE_OUTPUT_MAX_BYTES,
    MAX_ROW_ERRORS_REPORTED,
    AsyncScoringRequest,
    ContractError,
    ErrorCode,
    ErrorInfo,
    InferenceResult,
    OutputRef,
    RowError,
)
from shared.telemetry import pipeline

logger = logging.getLogger(__name__)

_END = object()
_HANDOVER_CHUNKS = 2
_GZIP_LEVEL = 1  # outputs are re-read once by the writer: favour speed over size
# Unused memory is handed back after every input of at least RELEASE_INPUT_BYTES (a large file leaves the heap as
# it found it for the next one) and once the small inputs since the last release have read RELEASE_AFTER_BYTES
# (trimming the heap after each small file cost more than scoring it).
RELEASE_INPUT_BYTES = 1024 * 1024
RELEASE_AFTER_BYTES = 8 * 1024 * 1024


def results_blob_name(request: AsyncScoringRequest) -> str:
    return f"{request.request_id}/{request.attempt}/{request.input_name}"


def failed(
    request: AsyncScoringRequest,
    code: ErrorCode,
    message: str,
    *,
    rows_failed: int = 0,
    row_errors: tuple[RowError, ...] = (),
) -> InferenceResult:
    error = ErrorInfo(code=code.value, message=message)
    return InferenceResult.for_request(request, error=error, rows_failed=rows_failed, row_errors=row_errors)


class _Prefetch:
    """Runs a chunk iterator in a thread, handing chunks over through a small bounded queue.

    The first two chunks are taken on the consuming thread: an input of a single chunk (every small file) is then
    read without starting a thread, and a larger one loses the overlap of one chunk's download.
    """

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = iter(chunks)
        self._queue: queue.Queue[object] = queue.Queue(_HANDOVER_CHUNKS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._put(chunk):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            self._put(exc)

    def __iter__(self) -> Iterator[Any]:
        first = next(self._chunks, _END)
        if first is _END:
            return
        try:
            second = next(self._chunks, _END)
        except BaseException as exc:  # noqa: BLE001 - raised after the chunk before it, as from the reader
            second = exc
        if second is not _END and not isinstance(second, BaseException):
            self._thread = threading.Thread(target=self._run, name="input-reader", daemon=True)
            self._thread.start()
        yield first
        if second is _END:
            return
        if isinstance(second, BaseException):
            raise second
        yield second
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


class _Totals:
    def __init__(self) -> None:
        self.rows = 0
        self.scored = 0
        self.failed = 0
        self.errors: list[RowError] = []

    def add(self, part: ChunkResult) -> None:
        self.rows += part.rows
        self.scored += part.scored
        self.failed += part.failed
        room = MAX_ROW_ERRORS_REPORTED - len(self.errors)
        if room > 0:
            self.errors.extend(part.errors[:room])


class ScoringJob:
    """Everything one worker thread needs to score requests (model, settings, its results store)."""

    def __init__(
        self, settings: ScoringSettings, model: ScoringModel, open_results_blob: Callable[[str], BlockWriter]
    ) -> None:
        self.settings = settings
        self.model = model
        self.validator = Validator(model.spec, MAX_ROW_ERRORS_REPORTED)
        self._open_results_blob = open_results_blob
        # This worker's clients of the input storage: one session and one pipeline per account for every file
        self._input = InputBlobs()
        self._read_since_release = 0
        self._last_read = 0

    def run(self, request: AsyncScoringRequest) -> InferenceResult:
        started = time.perf_counter()
        self._last_read = 0
        try:
            result = self._score(request)
        except ScoringError as exc:
            result = failed(request, exc.code, exc.message)
        except Exception:
            logger.exception("scoring %s failed unexpectedly", request.request_id)
            result = failed(request, ErrorCode.INTERNAL, "the scoring service failed on this input; see its logs")
        finally:
            if self._last_read >= RELEASE_INPUT_BYTES or self._read_since_release >= RELEASE_AFTER_BYTES:
                release_unused()
                self._read_since_release = 0
        pipeline.job_result(
            result.status, result.rows_scored, result.rows_failed, result.error.code if result.error else None
        )
        logger.info(
            "request %s (%s, attempt %d): %s, %d rows scored, %d failed in %.2f s",
            request.request_id,
            redact(request.blob_url),
            request.attempt,
            result.status,
            result.rows_scored,
            result.rows_failed,
            time.perf_counter() - started,
        )
        return result

    def _pieces(self, request: AsyncScoringRequest) -> Iterator[bytes]:
        s = self.settings
        try:
            inline = request.input_bytes()
        except ContractError as exc:
            raise ScoringError(ErrorCode.INVALID_REQUEST, str(exc)) from exc
        if inline is not None:  # a small file whose bytes came with the request: no storage read
            pieces = inline_pieces(inline, s.max_input_bytes)
        else:
            pieces = blob_pieces(self._input.client(request.blob_url), s.max_input_bytes)
        return decompressed(pieces, request.compression, s.max_data_bytes)

    def _score(self, request: AsyncScoringRequest) -> InferenceResult:
        content_type = request.format.content_type
        clocks = JobClocks()
        sink = OutputSink(
            INLINE_OUTPUT_MAX_BYTES,
            lambda: clocks.writer(self._open_results_blob(results_blob_name(request))),
            content_type,
        )
        model = clocks.model(self.model)
        compressor = (
            zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if request.compression == GZIP else None
        )

        def write(data: bytes) -> None:
            sink.write(compressor.compress(data) if compressor else data)

        output_size: int | None = None
        fmt = record_format(request.format, self.validator, model, self.settings)
        prefetch = _Prefetch(fmt.chunks(clocks.downloading(self._pieces(request))))
        totals = _Totals()
        try:
            chunks = iter(prefetch)
            first = next(chunks, None)
            if first is None:
                raise ScoringError(ErrorCode.EMPTY_FILE, "the input is empty")
            for chunk in _chain(first, chunks):
                with clocks.scoring_chunk():
                    part = fmt.score(chunk, totals.rows + 1)
                totals.add(part)
                write(part.data)
            tail = fmt.finish(totals.rows)
            if totals.scored == 0:
                sink.abort()
                example = totals.errors[0] if totals.errors else RowError(1, "no row passed validation")
                return failed(
                    request,
                    ErrorCode.NO_VALID_ROWS,
                    f"none of the {totals.rows} rows is valid; row {example.row}: {example.message}",
                    rows_failed=totals.failed,
                    row_errors=tuple(totals.errors),
                )
            write(tail)
            if compressor:
                sink.write(compressor.flush())
            outcome = sink.finish()
            output_size = outcome.size
        except BaseException:
            sink.abort()
            raise
        finally:
            prefetch.close()
            self._last_read = clocks.bytes_read
            self._read_since_release += clocks.bytes_read
            clocks.emit(output_size)
        if outcome.inline is not None:
            output = OutputRef.inline(outcome.inline, request.format, request.compression)
        else:
            output = OutputRef(
                request.format, request.compression, outcome.size, outcome.sha256, blob_url=outcome.blob_url
            )
        return InferenceResult.for_request(
            request,
            output=output,
            rows_scored=totals.scored,
            rows_failed=totals.failed,
            row_errors=tuple(totals.errors),
        )


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
