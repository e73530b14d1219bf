"""Parquet in, Parquet out: read by row group from a local spool, scored batch by batch, written streamed.

Parquet keeps its schema and row-group index in a footer at the end of the file, so a reader must seek.
The downloaded (for ``.parquet.gz``, inflated) pieces are spooled to an anonymous temporary file in the
temp directory (``TMPDIR``; on disk, never in memory; the service's size limits bound it), then read
with ``ParquetFile.iter_batches``, one row group at a time, cut into batches of about four times
``SCORING_CHUNK_BYTES`` decoded (never more than a row group). Memory is bounded by a row group and a
batch, not by the file.

Each batch is validated with ``Validator.check_arrow`` (typed columns keep their types; text is read as
in CSV). The good rows, in their input types, plus the model's output columns (``output.with_predictions``)
go to a ``ParquetWriter`` as one row group; the writer's file is drained after every batch, so the output
streams to the job's sink row group by row group, and :meth:`ParquetFormat.finish` adds the footer.
Dictionary-encoded columns (pandas categoricals, the classifier's labels) are written as plain values.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.service.chunk import ChunkResult, row_errors
from scoring.service.errors import ScoringError
from scoring.service.model import ScoringModel
from scoring.service.output import same_columns, with_predictions
from scoring.service.settings import ScoringSettings
from scoring.service.validation import Validator
from shared.contracts import ErrorCode

logger = logging.getLogger(__name__)

MIN_BATCH_ROWS = 1024
FIRST_BATCH_ROWS = 8192
# Decoded Arrow columns take about twice the bytes of the same rows as CSV text, and a model's predict has a
# cost per call (tree ensembles start their thread pool each time): a batch may hold a few chunks' worth.
BATCH_CHUNKS = 4


@contextmanager
def spooled(pieces: Iterable[bytes], directory: str | None = None) -> Iterator[IO[bytes]]:
    """The pieces in an anonymous temporary file (gone when the context ends), positioned at its start."""
    with tempfile.TemporaryFile(dir=directory) as file:
        for piece in pieces:
            file.write(piece)
        file.seek(0)
        yield file


def open_parquet(file: IO[bytes]) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        raise ScoringError(ErrorCode.MALFORMED_DATA, f"the input is not a readable Parquet file ({exc})") from exc


def batch_rows(decoded_bytes: int, rows: int, batch_bytes: int) -> int:
    """Rows per batch so a batch holds about ``batch_bytes`` once decoded, judged from a batch already read."""
    if rows == 0 or decoded_bytes == 0:
        return FIRST_BATCH_ROWS
    return max(MIN_BATCH_ROWS, int(batch_bytes * rows / decoded_bytes))


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns decoded to their values; no schema metadata (pandas' would be stale)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    return table.replace_schema_metadata(None)


def read_batches(file: pq.ParquetFile, batch_bytes: int) -> Iterator[pa.Table]:
    """The file's rows as tables of about ``batch_bytes`` decoded, row group by row group (at least one table).

    The footer's sizes are of the encoded pages (a dictionary-encoded text column is a fraction of its
    decoded size), so the batch size is set from the decoded size of the batches read so far; each row
    group gets its own reader, so nothing beyond the current row group is read ahead.
    """
    if file.metadata.num_rows == 0:
        yield _plain(file.schema_arrow.empty_table())
        return
    per_batch = FIRST_BATCH_ROWS
    try:
        for group in range(file.num_row_groups):
            for batch in file.iter_batches(batch_size=per_batch, row_groups=[group]):
                table = _plain(pa.Table.from_batches([batch]))
                per_batch = batch_rows(table.nbytes, table.num_rows, batch_bytes)
                yield table
    except (pa.ArrowException, OSError) as exc:
        raise ScoringError(ErrorCode.MALFORMED_DATA, f"the Parquet data could not be read ({exc})") from exc


class _Drain:
    """A write-only file for ``ParquetWriter`` whose bytes are taken after each row group."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class ParquetOutput:
    """Tables written as row groups of one Parquet file; each call returns the bytes it completed."""

    def __init__(self) -> None:
        self._drain = _Drain()
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> bytes:
        table = _plain(table)
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._drain, self._schema)
        else:
            assert self._schema is not None
            same_columns(self._schema.names, table)
            if table.schema != self._schema:
                try:
                    table = table.cast(self._schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ScoringError(
                        ErrorCode.INTERNAL,
                        f"the model's output types changed between batches ({table.schema} after {self._schema})",
                    ) from exc
        self._writer.write_table(table)
        return self._drain.take()

    def close(self) -> bytes:
        """The footer (nothing when no table was written)."""
        if self._writer is None:
            return b""
        self._writer.close()
        self._writer = None
        return self._drain.take()


class ParquetFormat:
    """The ``RecordFormat`` for ``.parquet`` inputs (see the module docstring)."""

    def __init__(self, validator: Validator, model: ScoringModel, settings: ScoringSettings) -> None:
        self._validator = validator
        self._model = model
        self._batch_bytes = settings.chunk_bytes * BATCH_CHUNKS
        self._output = ParquetOutput()

    def chunks(self, pieces: Iterator[bytes]) -> Iterator[pa.Table]:
        with spooled(pieces) as file:
            if file.seek(0, 2) == 0:
                return  # no bytes at all: the job reports an empty input
            file.seek(0)
            parquet = open_parquet(file)
            self._validator.check_header(parquet.schema_arrow.names)
            logger.info(
                "Parquet input: %d rows in %d row groups", parquet.metadata.num_rows, parquet.metadata.num_row_groups
            )
            yield from read_batches(parquet, self._batch_bytes)

    def score(self, chunk: pa.Table, first_row: int) -> ChunkResult:
        rows = chunk.num_rows
        if rows == 0:
            return ChunkResult(b"", 0, 0)
        checked = self._validator.check_arrow(chunk)
        errors = row_errors(checked.errors[: self._validator.max_errors], np.arange(first_row, first_row + rows))
        good = checked.rows
        data = b""
        if good:
            kept = chunk if good == rows else chunk.filter(pa.array(checked.good))
            data = self._output.write(with_predictions(kept, self._model.predict(checked)))
        return ChunkResult(data, rows, good, errors, checked.error_count)

    def finish(self, rows: int) -> bytes:
        if rows == 0:
            raise ScoringError(ErrorCode.HEADER_ONLY, "the Parquet file has columns but no rows")
        return self._output.close()
