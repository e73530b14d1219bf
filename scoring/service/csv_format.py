"""CSV input: header checks and chunk scoring that appends the model's output columns to the raw lines.

Fast path (a chunk without any quote character, which is what machine-written telco files look like):
each physical line is one record. Arrow's CSV reader parses the chunk with the numeric columns typed as
float64; when every row is good (the usual case) that is all the parsing and checking there is. A chunk
the typed read refuses (a wrong field count, a field that is not a number) or with any bad row is
parsed again as text and checked column by column, with numpy counting the fields per line, so each
bad row is reported with its reason. Either way each good row's output is its original line bytes
plus ``,<output fields>`` (``scoring.service.output.csv_fields``, CSV-quoted) - no re-serialisation of the
input values. Slow path (a chunk holding quotes, so fields may contain commas or newlines): Python's csv
module reads the records and a csv writer writes them back, followed by the output fields.

The output's header line (the input's header plus the output column names) comes with the first scored
rows, since a pyfunc model's output columns are known only once it has predicted.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from scoring.service.chunk import ChunkResult, row_errors
from scoring.service.errors import ScoringError
from scoring.service.model import ScoringModel
from scoring.service.output import Predictions, csv_fields, csv_head, same_columns
from scoring.service.validation import Checked, Validator
from shared.contracts import ErrorCode

_COMMA = 44
_NEWLINE = 10
_CR = 13


@dataclass(frozen=True)
class CsvHeader:
    names: tuple[str, ...]
    line_ending: bytes  # b"\n" or b"\r\n", as the input uses
    raw: bytes = b""  # the input's header line as it came, without its line ending


def check_utf8(chunk: bytes, first_row: int) -> None:
    """Fail with the data row near the first byte that is not UTF-8 (ASCII, the usual case, is checked fastest)."""
    if not chunk.isascii():
        decode(chunk, first_row)


def decode(chunk: bytes, first_row: int) -> str:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = first_row + chunk.count(b"\n", 0, exc.start)
        raise ScoringError(
            ErrorCode.UNDECODABLE, f"the input is not UTF-8 text: byte {chunk[exc.start]:#04x} near data row {row}"
        ) from exc


def split_header(chunk: bytes) -> tuple[CsvHeader, bytes, bytes]:
    """(header, its raw line without the line ending, the rest of the chunk)."""
    end = chunk.find(b"\n")
    raw = chunk[:end] if end >= 0 else chunk
    rest = chunk[end + 1 :] if end >= 0 else b""
    ending = b"\r\n" if raw.endswith(b"\r") else b"\n"
    raw = raw.removesuffix(b"\r")
    text = decode(raw, 0).removeprefix("\ufeff")
    try:
        names = next(csv.reader([text]))
    except csv.Error as exc:
        raise ScoringError(ErrorCode.MALFORMED_DATA, f"the header line is not CSV ({exc})") from exc
    names = [n.strip() for n in names]
    if (len(names) == 1 and names[0] == "") or not text.strip():
        raise ScoringError(ErrorCode.MALFORMED_DATA, "the first line is empty; expected a header row")
    return CsvHeader(tuple(names), ending, raw), raw, rest


class CsvScorer:
    """Scores the data chunks of one CSV input; the first output it returns starts with the header line."""

    def __init__(self, header: CsvHeader, validator: Validator, model: ScoringModel) -> None:
        validator.check_header(header.names)
        self.header = header
        self.validator = validator
        self.model = model
        self._types = {name: pa.large_string() for name in header.names}
        self._typed = validator.typed_columns(header.names)
        self.output_names: list[str] | None = None  # set by the first prediction

    def _predict(self, checked: Checked) -> tuple[bytes, Predictions]:
        """The model's predictions, and the output header line when these are the first rows scored."""
        predictions = self.model.predict(checked)
        if self.output_names is not None:
            same_columns(self.output_names, predictions)
            return b"", predictions
        self.output_names = predictions.column_names
        return self.header.raw + csv_head(predictions.column_names), predictions

    def score(self, chunk: bytes, first_row: int) -> ChunkResult:
        """Score one chunk of whole records; ``first_row`` is the 1-based data row number of its first record."""
        check_utf8(chunk, first_row)
        if b'"' in chunk:
            return self._score_quoted(chunk, first_row)
        return self._score_plain(chunk, first_row)

    def _score_plain(self, chunk: bytes, first_row: int) -> ChunkResult:
        view = np.frombuffer(chunk, dtype=np.uint8)
        newlines = np.flatnonzero(view == _NEWLINE)  # record_chunks ends every chunk with a newline
        if not len(newlines):
            return ChunkResult(b"", 0, 0)
        starts = np.concatenate(([0], newlines[:-1] + 1))
        ends = newlines - ((newlines > starts) & (view[newlines - 1] == _CR))
        keep = ends > starts  # blank lines are not rows (Arrow's reader skips them too)
        if keep.all():
            fast = self._score_typed(chunk, ends)
            if fast is not None:
                return fast
        else:
            starts, ends = starts[keep], ends[keep]
        if not len(starts):
            return ChunkResult(b"", 0, 0)
        commas = np.flatnonzero(view == _COMMA)
        fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        width = len(self.header.names)
        shaped = fields == width
        rows = np.arange(first_row, first_row + len(starts))
        errors = [(int(i), f"expected {width} fields, found {int(fields[i])}") for i in np.flatnonzero(~shaped)]
        bad_shape = len(errors)
        if bad_shape == len(starts):
            return ChunkResult(b"", len(starts), 0, row_errors(errors[: self.validator.max_errors], rows), bad_shape)
        body = chunk
        if bad_shape:
            body = b"".join(chunk[a:b] + b"\n" for a, b, ok in zip(starts, ends, shaped, strict=True) if ok)
        checked = self.validator.check_text(self._parse(body))
        shaped_index = np.flatnonzero(shaped)
        errors = sorted(errors[: self.validator.max_errors] + [(int(shaped_index[i]), m) for i, m in checked.errors])
        good = shaped_index[checked.good]
        data = b""
        if len(good):
            data = self._append_fields(chunk, ends, good, checked)
        failed = bad_shape + checked.error_count
        return ChunkResult(data, len(starts), len(good), row_errors(errors[: self.validator.max_errors], rows), failed)

    def _score_typed(self, chunk: bytes, ends: np.ndarray) -> ChunkResult | None:
        """The whole chunk scored from one typed read, or None when any row needs the row-by-row checks."""
        try:
            table = pacsv.read_csv(
                pa.BufferReader(chunk),
                read_options=pacsv.ReadOptions(column_names=list(self.header.names), use_threads=True),
                parse_options=pacsv.ParseOptions(quote_char=False),
                # No null spellings: an empty or "NA" number fails the read, and the text path names the row.
                # score() has checked the chunk is UTF-8.
                convert_options=pacsv.ConvertOptions(
                    column_types=self._typed, strings_can_be_null=False, null_values=[], check_utf8=False
                ),
            )
        except pa.ArrowException:  # the text path reads it again and names the bad rows
            return None
        if table.num_rows != len(ends):
            return None
        checked = self.validator.check_typed(table)
        if checked is None:
            return None
        return ChunkResult(self._append_fields(chunk, ends, None, checked), len(ends), len(ends))

    def _append_fields(self, chunk: bytes, ends: np.ndarray, good: np.ndarray | None, checked: Checked) -> bytes:
        """The good rows' raw bytes, each preceded by its line break and followed by the output fields.

        Row i is the byte range from the end of row i-1 to the end of row i, so it starts with the
        input's own line break; an Arrow array over those ranges (no copy of the rows) is joined with
        the output fields in one vectorised call. ``good`` None means every row.
        """
        head, predictions = self._predict(checked)
        ending = self.header.line_ending
        offsets = np.concatenate(([0], ends + len(ending))).astype(np.int64)
        rows = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(ending + chunk)]
        )
        if good is not None:
            rows = rows.take(pa.array(good))
        joined = pc.binary_join_element_wise(rows, csv_fields(predictions), pa.scalar(b"", pa.large_binary()))
        value_offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
        first, last = value_offsets[joined.offset], value_offsets[joined.offset + len(joined)]
        return head + bytes(memoryview(joined.buffers()[2])[first:last])

    def _parse(self, body: bytes) -> pa.Table:
        try:
            return pacsv.read_csv(
                io.BytesIO(body),
                read_options=pacsv.ReadOptions(column_names=list(self.header.names), use_threads=True),
                parse_options=pacsv.ParseOptions(quote_char=False),
                convert_options=pacsv.ConvertOptions(column_types=self._types, strings_can_be_null=False),
            )
        except pa.ArrowInvalid as exc:
            raise ScoringError(ErrorCode.MALFORMED_DATA, f"the CSV data could not be parsed ({exc})") from exc

    def _score_quoted(self, chunk: bytes, first_row: int) -> ChunkResult:
        text = decode(chunk, first_row)
        try:
            records = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
        except csv.Error as exc:
            raise ScoringError(
                ErrorCode.MALFORMED_DATA, f"the CSV data could not be parsed near row {first_row}: {exc}"
            ) from exc
        width = len(self.header.names)
        shaped = np.fromiter((len(r) == width for r in records), dtype=bool, count=len(records))
        rows = np.arange(first_row, first_row + len(records))
        errors = [
            (int(i), f"expected {width} fields, found {len(records[i])}")
            for i in np.flatnonzero(~shaped)[: self.validator.max_errors]
        ]
        good_records = [r for r, ok in zip(records, shaped, strict=True) if ok]
        if not good_records:
            return ChunkResult(b"", len(records), 0, row_errors(errors, rows), len(records))
        columns = list(zip(*good_records, strict=True))
        table = pa.table(
            {n: pa.array(c, type=pa.large_string()) for n, c in zip(self.header.names, columns, strict=True)}
        )
        checked = self.validator.check_text(table)
        shaped_rows = np.flatnonzero(shaped)
        errors = sorted(errors + [(int(shaped_rows[i]), m) for i, m in checked.errors])[: self.validator.max_errors]
        kept = [r for r, ok in zip(good_records, checked.good, strict=True) if ok]
        data = b""
        if kept:
            head, predictions = self._predict(checked)
            suffixes = csv_fields(predictions).to_pylist()
            ending = self.header.line_ending.decode()
            out = io.StringIO(newline="")
            writer = csv.writer(out, lineterminator="")
            for record, suffix in zip(kept, suffixes, strict=True):
                out.write(ending)  # a leading line break per row, like the fast path
                writer.writerow(record)
                out.write(suffix.decode())
            data = head + out.getvalue().encode()
        failed = int((~shaped).sum()) + checked.error_count
        return ChunkResult(data, len(records), len(kept), row_errors(errors, rows), failed)
