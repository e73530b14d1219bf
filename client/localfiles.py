"""Local input files: cheap checks before upload, reading rows for sync scoring, and where outputs go.

The checks catch what is obviously wrong (name, size, gzip framing, an unreadable first line, a Parquet
file without its magic bytes or footer) so the user hears it at once; the service still validates every row.
Reading Parquet rows for sync scoring needs pyarrow (installed with the scoring extra); nothing else does.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.contracts import GZIP, DataFormat, ErrorCode, detect_format

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
SUPPORTED = ".csv, .jsonl, .ndjson (optionally .gz) or .parquet"
PEEK_BYTES = 64 * 1024
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


class LocalRejection(Exception):
    """A file the client refuses to upload; ``code`` is one of :class:`ErrorCode`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class InputFile:
    path: Path
    format: DataFormat
    compression: str | None
    size: int


def check_input(path: Path, max_bytes: int) -> InputFile:
    """Validate one file locally; raises :class:`LocalRejection` with a stable code and a readable reason."""
    found = detect_format(path.name)
    if found is None:
        raise LocalRejection(ErrorCode.UNSUPPORTED_FORMAT, f"unsupported file type (use {SUPPORTED})")
    fmt, compression = found
    size = path.stat().st_size
    if size == 0:
        raise LocalRejection(ErrorCode.EMPTY_FILE, "the file is empty")
    if size > max_bytes:
        raise LocalRejection(ErrorCode.TOO_LARGE, f"{size} bytes is over the limit of {max_bytes} (MAX_INPUT_BYTES)")
    head, complete = _peek(path, compression)
    if fmt == DataFormat.PARQUET:
        _check_parquet(path, head, compression)
    else:
        _check_head(head, complete, fmt)
    return InputFile(path=path, format=fmt, compression=compression, size=size)


def _peek(path: Path, compression: str | None) -> tuple[bytes, bool]:
    """The first bytes of the (decompressed) content, and whether that is all of it."""
    with path.open("rb") as raw:
        if compression != GZIP:
            head = raw.read(PEEK_BYTES + 1)
            return head[:PEEK_BYTES], len(head) <= PEEK_BYTES
        if raw.read(2) != GZIP_MAGIC:
            raise LocalRejection(ErrorCode.UNDECODABLE, "named .gz but is not gzip data")
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                head = unzipped.read(PEEK_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise LocalRejection(ErrorCode.UNDECODABLE, f"broken gzip data ({exc})") from None
        return head[:PEEK_BYTES], len(head) <= PEEK_BYTES


def _check_parquet(path: Path, head: bytes, compression: str | None) -> None:
    """A Parquet file starts and ends with ``PAR1`` (the footer is at the end; a cut file has none)."""
    if not head.startswith(PARQUET_MAGIC):
        raise LocalRejection(ErrorCode.MALFORMED_DATA, "named .parquet but does not start like a Parquet file")
    if compression is None:
        with path.open("rb") as raw:
            raw.seek(-len(PARQUET_MAGIC), 2)
            if raw.read() != PARQUET_MAGIC or path.stat().st_size < 3 * len(PARQUET_MAGIC):
                raise LocalRejection(ErrorCode.MALFORMED_DATA, "the Parquet file has no footer (is it cut short?)")


def _check_head(head: bytes, complete: bool, fmt: DataFormat) -> None:
    lines = head.splitlines()
    if not complete:
        lines = lines[:-1]  # the last line may be cut in the middle
    text_lines = []
    for number, line in enumerate(lines, start=1):
        try:
            text_lines.append(line.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError:
            raise LocalRejection(ErrorCode.UNDECODABLE, f"line {number} is not UTF-8 text") from None
    nonblank = [line for line in text_lines if line.strip()]
    if not nonblank:
        raise LocalRejection(ErrorCode.EMPTY_FILE, "the file has no content")
    if fmt == DataFormat.CSV:
        if complete and len(nonblank) < 2:
            raise LocalRejection(ErrorCode.HEADER_ONLY, "the CSV file has a header but no data rows")
        return
    try:
        first = json.loads(nonblank[0])
    except json.JSONDecodeError as exc:
        raise LocalRejection(ErrorCode.MALFORMED_DATA, f"the first line is not JSON ({exc.msg})") from None
    if not isinstance(first, dict):
        raise LocalRejection(ErrorCode.MALFORMED_DATA, "each JSON Lines row must be a JSON object")


def _number_or_text(value: str) -> Any:
    """CSV cells that are plainly numbers become numbers (JSON rows carry typed values); the rest stay text,
    including zero-padded codes like ``007`` and words like ``nan`` or ``inf``."""
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return int(text) if str(int(text)) == text.lstrip("+") else value
    if _DECIMAL.fullmatch(text):
        return float(text)
    return value


def _parquet_rows(path: Path, compression: str | None, limit: int) -> list[dict[str, Any]]:
    """Parquet rows as JSON-ready dicts: dates and times become ISO 8601 text, as a JSON body carries them."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise LocalRejection(
            ErrorCode.UNSUPPORTED_FORMAT, "reading Parquet needs pyarrow (pip install pyarrow); submit works without"
        ) from None
    try:
        source = gzip.decompress(path.read_bytes()) if compression == GZIP else path.read_bytes()
        file = pq.ParquetFile(pa.BufferReader(source))
        if file.metadata.num_rows > limit:
            raise LocalRejection(
                ErrorCode.TOO_LARGE, f"{file.metadata.num_rows} rows is over the sync limit of {limit}; use submit"
            )
        table = file.read()
    except (OSError, EOFError, zlib.error, pa.ArrowException) as exc:
        raise LocalRejection(ErrorCode.UNDECODABLE, f"cannot read it as Parquet ({exc})") from None
    for i, field in enumerate(table.schema):
        if pa.types.is_temporal(field.type):
            table = table.set_column(i, field.name, pc.strftime(table.column(i), "%Y-%m-%dT%H:%M:%S"))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def read_rows(path: Path, limit: int) -> list[dict[str, Any]]:
    """Rows of a CSV / JSON Lines (optionally gzip) or Parquet file for sync scoring; at most ``limit`` rows."""
    found = detect_format(path.name)
    if found is None:
        raise LocalRejection(ErrorCode.UNSUPPORTED_FORMAT, f"unsupported file type (use {SUPPORTED})")
    fmt, compression = found
    if fmt == DataFormat.PARQUET:
        from_parquet = _parquet_rows(path, compression, limit)
        if not from_parquet:
            raise LocalRejection(ErrorCode.NO_VALID_ROWS, "the file has no data rows")
        return from_parquet
    try:
        data = path.read_bytes()
        if compression == GZIP:
            data = gzip.decompress(data)
        text = data.decode("utf-8-sig")
    except (OSError, EOFError, zlib.error) as exc:
        raise LocalRejection(ErrorCode.UNDECODABLE, f"cannot read it ({exc})") from None
    except UnicodeDecodeError:
        raise LocalRejection(ErrorCode.UNDECODABLE, "not UTF-8 text") from None
    rows: list[dict[str, Any]] = []
    if fmt == DataFormat.CSV:
        for record in csv.DictReader(io.StringIO(text)):
            rows.append({k: _number_or_text(v) for k, v in record.items() if k is not None})
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LocalRejection(ErrorCode.MALFORMED_DATA, f"line {number} is not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise LocalRejection(ErrorCode.MALFORMED_DATA, f"line {number} is not a JSON object")
            rows.append(row)
    if not rows:
        raise LocalRejection(ErrorCode.NO_VALID_ROWS, "the file has no data rows")
    if len(rows) > limit:
        raise LocalRejection(ErrorCode.TOO_LARGE, f"{len(rows)} rows is over the sync limit of {limit}; use submit")
    return rows


def scored_name(name: str) -> str:
    """``churn.csv`` -> ``churn.scored.csv``, ``x.jsonl.gz`` -> ``x.scored.jsonl.gz``."""
    lower = name.lower()
    suffix_len = 3 if lower.endswith(".gz") else 0
    base, gz = name[: len(name) - suffix_len], name[len(name) - suffix_len :]
    stem, dot, ext = base.rpartition(".")
    if not dot:
        return f"{name}.scored"
    return f"{stem}.scored.{ext}{gz}"


def output_path(input_path: Path, out_dir: Path | None) -> Path:
    """Where a file's predictions go: ``out_dir/<name>``, else ``<name>.scored.<ext>`` beside the input."""
    if out_dir is not None:
        target = out_dir / input_path.name
        if target.resolve() != input_path.resolve():
            return target
    return input_path.with_name(scored_name(input_path.name))
