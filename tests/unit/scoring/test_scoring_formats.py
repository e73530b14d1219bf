"""CSV and JSON Lines chunk scoring on bytes: the fast and the quoted path agree, line breaks survive."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from scoring.examples.churn.sample import sample_bytes
from scoring.service.csv_format import CsvScorer, split_header
from scoring.service.errors import ScoringError
from scoring.service.jsonl_format import JsonlScorer
from scoring.service.model import ScoringModel, load_model
from scoring.service.validation import Validator
from shared.contracts import ErrorCode


@pytest.fixture(scope="module")
def model(churn_model_dir: Path) -> ScoringModel:
    return load_model(churn_model_dir.parent)  # the MLmodel is found one level down


def _score_csv(model: ScoringModel, data: bytes, split_at: int | None = None) -> tuple[bytes, list[int]]:
    header, _, rest = split_header(data)
    scorer = CsvScorer(header, Validator(model.spec, 20), model)
    parts = [rest] if split_at is None else [rest[:split_at], rest[split_at:]]
    out, bad_rows, row = [], [], 1
    for part in parts:
        result = scorer.score(part, row)
        row += result.rows
        out.append(result.data)
        bad_rows += [e.row for e in result.errors]
    return b"".join(out) + header.line_ending, bad_rows


def test_fast_and_quoted_paths_give_the_same_rows(model: ScoringModel) -> None:
    plain = sample_bytes(200, "csv", seed=41)
    fast, _ = _score_csv(model, plain)
    quoted_input = plain.replace(b"Fiber optic", b'"Fiber optic"')
    slow, _ = _score_csv(model, quoted_input)
    assert list(csv.reader(io.StringIO(fast.decode()))) == list(csv.reader(io.StringIO(slow.decode())))


def test_crlf_and_blank_lines_are_kept_and_bad_rows_dropped(model: ScoringModel) -> None:
    lines = sample_bytes(6, "csv", seed=42).decode().splitlines()
    lines[3] = lines[3].replace(",Yes,", ",Maybe,", 1)
    data = ("\r\n".join([*lines[:2], "", *lines[2:]]) + "\r\n").encode()
    newline_at = data.index(b"\r\n", len(lines[0]) + 40) + 2
    out, bad = _score_csv(model, data, split_at=newline_at - len(lines[0]) - 2)
    assert bad == [3]
    text = out.decode()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = [r for r in text.split("\r\n") if r]
    assert rows[0] == lines[0] + ",prediction,probability"
    assert [r.rsplit(",", 2)[0] for r in rows[1:]] == [lines[1], lines[2], lines[4], lines[5], lines[6]]


def test_ragged_rows_in_the_fast_path(model: ScoringModel) -> None:
    lines = sample_bytes(5, "csv", seed=43).decode().splitlines()
    lines[2] += ",extra"
    lines[4] = "   "
    out, bad = _score_csv(model, ("\n".join(lines) + "\n").encode())
    assert bad == [2, 4]
    assert len(out.decode().splitlines()) == 1 + 3


def test_jsonl_keys_are_checked_on_the_first_object(model: ScoringModel) -> None:
    scorer = JsonlScorer(Validator(model.spec, 20), model)
    good = sample_bytes(3, "jsonl", seed=44)
    result = scorer.score(b"not json\n" + good, 1)
    assert (result.rows, result.scored, [e.row for e in result.errors]) == (4, 3, [1])
    assert all(set(json.loads(line)) >= {"prediction", "probability"} for line in result.data.splitlines())
    with pytest.raises(ScoringError) as caught:
        JsonlScorer(Validator(model.spec, 20), model).score(b'{"a": 1}\n', 1)
    assert caught.value.code == ErrorCode.MISSING_COLUMNS


def test_a_bad_row_does_not_change_the_other_rows_output(model: ScoringModel) -> None:
    data = sample_bytes(300, "csv", seed=41)
    header, _, rest = split_header(data)
    lines = rest.splitlines(keepends=True)
    broken = lines[:]
    fields = broken[7].split(b",")
    fields[header.names.index("tenure")] = b"NA"
    broken[7] = b",".join(fields)
    scorer = CsvScorer(header, Validator(model.spec, 20), model)
    clean = scorer.score(b"".join(lines), 1)  # every row good: the typed read
    partial = scorer.score(b"".join(broken), 1)  # one bad row: the row-by-row checks
    assert (clean.failed, partial.failed, partial.scored) == (0, 1, 299)
    assert [(e.row, e.message) for e in partial.errors] == [(8, "tenure: 'NA' is not a number")]
    clean_lines = clean.data.split(b"\n")[1:]
    expected, got = clean_lines[:7] + clean_lines[8:], partial.data.split(b"\n")[1:]
    # Full-precision probabilities may differ in the last bit with the batch's size (BLAS blocking).
    assert [line.rsplit(b",", 1)[0] for line in got] == [line.rsplit(b",", 1)[0] for line in expected]
    assert np.allclose(
        [float(line.rsplit(b",", 1)[1]) for line in got],
        [float(line.rsplit(b",", 1)[1]) for line in expected],
        rtol=0,
        atol=1e-12,
    )
