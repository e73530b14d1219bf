"""JSON Lines input: one object per line; the output line is the input line with the output keys appended.

The first line that parses as an object plays the role of a CSV header: its keys are checked against
the signature (missing, unexpected, duplicated keys fail the file). Later lines with other keys, lines
that are not JSON objects, and wrong values are bad rows. The output keeps each good line's original
bytes and inserts the model's output columns (``scoring.service.output.json_members``, JSON-escaped)
before the closing brace.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from scoring.service.chunk import ChunkResult, row_errors
from scoring.service.csv_format import check_utf8
from scoring.service.errors import ScoringError
from scoring.service.model import ScoringModel
from scoring.service.output import json_members, same_columns
from scoring.service.validation import Validator
from shared.contracts import ErrorCode


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ScoringError(ErrorCode.DUPLICATE_COLUMNS, f"duplicated keys in the first object: {duplicates}")
    return dict(pairs)


class JsonlScorer:
    def __init__(self, validator: Validator, model: ScoringModel) -> None:
        self.validator = validator
        self.model = model
        self.names = validator.spec.names
        self.required = frozenset(validator.spec.required)
        self.allowed = frozenset(self.names)
        self._header_checked = False
        self.output_names: list[str] | None = None

    def _check_first(self, line: bytes) -> None:
        try:
            first = json.loads(line, object_pairs_hook=_pairs)
        except ValueError:
            return  # not an object: reported as a bad row; the next line gets to be the reference
        if isinstance(first, dict):
            self.validator.check_header(list(first))
            self._header_checked = True

    def _parse(self, line: bytes) -> tuple[dict[str, Any] | None, str]:
        try:
            obj = json.loads(line)
        except ValueError as exc:
            return None, f"not valid JSON ({exc})"
        if not isinstance(obj, dict):
            return None, f"expected a JSON object, found {type(obj).__name__}"
        keys = obj.keys()
        if not self.required <= keys or not keys <= self.allowed:
            return None, self.validator.check_keys(keys) or ""
        return obj, ""

    def score(self, chunk: bytes, first_row: int) -> ChunkResult:
        check_utf8(chunk, first_row)
        lines = [line.rstrip() for line in chunk.split(b"\n")]
        lines = [line for line in lines if line]
        if not lines:
            return ChunkResult(b"", 0, 0)
        if not self._header_checked:
            for line in lines:
                self._check_first(line)
                if self._header_checked:
                    break
        rows = np.arange(first_row, first_row + len(lines))
        objects: list[dict[str, Any]] = []
        index: list[int] = []
        errors: list[tuple[int, str]] = []
        bad_shape = 0
        for i, line in enumerate(lines):
            obj, problem = self._parse(line)
            if obj is None:
                bad_shape += 1
                if len(errors) < self.validator.max_errors:
                    errors.append((i, problem))
            else:
                objects.append(obj)
                index.append(i)
        if not objects:
            return ChunkResult(b"", len(lines), 0, row_errors(errors, rows), bad_shape)
        present = [n for n in self.names if n in objects[0] or n in self.required]
        columns = {n: [o.get(n) for o in objects] for n in present}
        checked = self.validator.check_values(columns, len(objects))
        errors = sorted(errors + [(index[i], m) for i, m in checked.errors])[: self.validator.max_errors]
        kept = [lines[index[i]] for i in np.flatnonzero(checked.good)]
        data = b""
        if kept:
            predictions = self.model.predict(checked)
            if self.output_names is None:
                self.output_names = predictions.column_names
            same_columns(self.output_names, predictions)
            members: list[bytes] = json_members(predictions).to_pylist()
            data = b"".join([_appended(line, member) for line, member in zip(kept, members, strict=True)])
        failed = bad_shape + checked.error_count
        return ChunkResult(data, len(lines), len(kept), row_errors(errors, rows), failed)


def _appended(line: bytes, members: bytes) -> bytes:
    """The object's line with ``members`` (``,"k":v...``) before its closing brace."""
    body = line[:-1]
    if body.rstrip().endswith(b"{"):  # an object without keys: no comma before the first member
        members = members[1:]
    return body + members + b"}\n"
