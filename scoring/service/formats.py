"""The input/output formats of async jobs: the ``RecordFormat`` port and the registry the job picks from.

A job (``scoring.service.job``) streams the input blob as byte pieces (downloaded and inflated), and for
the request's :class:`shared.contracts.DataFormat` builds a ``RecordFormat`` from :data:`FORMATS`, then:

1. ``chunks(pieces)`` cuts the pieces into units of whole records (run in a reader thread, handed over
   through a small queue: memory stays bounded by a few units whatever the input size);
2. ``score(unit, first_row)`` validates (``scoring.service.validation.Validator``), predicts
   (``scoring.service.model.ScoringModel.predict``) and returns a :class:`ChunkResult` whose ``data`` is
   the unit's output bytes (the format's header, if any, comes with the first scored rows);
3. ``finish()`` returns the output's closing bytes once every unit is scored; it raises
   ``ScoringError(HEADER_ONLY | EMPTY_FILE)`` when the input held no data rows.

Adding a format: implement the three methods with the output helpers of ``scoring.service.output``
(``csv_fields`` / ``json_members`` for text, ``with_predictions`` for columnar files), add the
``DataFormat`` to ``shared.contracts``, and register a factory in :data:`FORMATS`. The job, the sink
(which stages output bytes as blocks) and the result message stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from scoring.service.chunk import ChunkResult
from scoring.service.csv_format import CsvScorer, split_header
from scoring.service.errors import ScoringError
from scoring.service.jsonl_format import JsonlScorer
from scoring.service.model import ScoringModel
from scoring.service.parquet_format import ParquetFormat
from scoring.service.settings import ScoringSettings
from scoring.service.source import record_chunks
from scoring.service.validation import Validator
from shared.contracts import DataFormat, ErrorCode


class RecordFormat(Protocol):
    """One input format and the output written for it (see the module docstring)."""

    def chunks(self, pieces: Iterator[bytes]) -> Iterator[Any]: ...

    def score(self, chunk: Any, first_row: int) -> ChunkResult: ...

    def finish(self, rows: int) -> bytes: ...


FormatFactory = Callable[[Validator, ScoringModel, ScoringSettings], RecordFormat]


class CsvFormat:
    """CSV in, CSV out: the first chunk's first line is the header (see ``scoring.service.csv_format``)."""

    def __init__(self, validator: Validator, model: ScoringModel, settings: ScoringSettings) -> None:
        self._validator = validator
        self._model = model
        self._settings = settings
        self._scorer: CsvScorer | None = None

    def chunks(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        s = self._settings
        return record_chunks(pieces, chunk_bytes=s.chunk_bytes, max_record_bytes=s.max_record_bytes, quotes=True)

    def score(self, chunk: bytes, first_row: int) -> ChunkResult:
        if self._scorer is None:
            header, _, chunk = split_header(chunk)
            self._scorer = CsvScorer(header, self._validator, self._model)
        return self._scorer.score(chunk, first_row)

    def finish(self, rows: int) -> bytes:
        if rows == 0 or self._scorer is None:
            raise ScoringError(ErrorCode.HEADER_ONLY, "the input has a header but no data rows")
        return self._scorer.header.line_ending


class JsonlFormat:
    """JSON Lines in, JSON Lines out (see ``scoring.service.jsonl_format``)."""

    def __init__(self, validator: Validator, model: ScoringModel, settings: ScoringSettings) -> None:
        self._scorer = JsonlScorer(validator, model)
        self._settings = settings

    def chunks(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        s = self._settings
        return record_chunks(pieces, chunk_bytes=s.chunk_bytes, max_record_bytes=s.max_record_bytes, quotes=False)

    def score(self, chunk: bytes, first_row: int) -> ChunkResult:
        return self._scorer.score(chunk, first_row)

    def finish(self, rows: int) -> bytes:
        if rows == 0:
            raise ScoringError(ErrorCode.EMPTY_FILE, "the input holds no JSON lines")
        return b""


FORMATS: dict[DataFormat, FormatFactory] = {
    DataFormat.CSV: CsvFormat,
    DataFormat.JSONL: JsonlFormat,
    DataFormat.PARQUET: ParquetFormat,
}


def record_format(
    fmt: DataFormat, validator: Validator, model: ScoringModel, settings: ScoringSettings
) -> RecordFormat:
    try:
        factory = FORMATS[fmt]
    except KeyError:
        raise ScoringError(ErrorCode.UNSUPPORTED_FORMAT, f"this scoring service does not read {fmt} inputs") from None
    return factory(validator, model, settings)
