"""CSV and JSON Lines chunk scoring on bytes: the fast and the quoted path agree, line breaks survive."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from scoring.sample import sample_bytes
from scoring.service.csv_format import CsvScorer, split_header
from scoring.service.errors import ScoringError
from scoring.service.jsonl_format import JsonlScorer
from scoring.service.model import ChurnModel
from scoring.service.validation import Validator
from shared.contracts import ErrorCode


@pytest.fixture(scope="module")
def model(churn_model_dir: Path) -> ChurnModel:
    return ChurnModel.load(churn_model_dir.parent)  # the MLmodel is found one level down


def _score_csv(model: ChurnModel, data: bytes, split_at: int | None = None) -> tuple[bytes, list[int]]:
    header, raw, rest = split_header(data)
    scorer = CsvScorer(header, Validator(model.spec, 20), model)
    parts = [rest] if split_at is None else [rest[:split_at], rest[split_at:]]
    out, bad_rows, row = [header.output_head(raw)], [], 1
    for part in parts:
        result = scorer.score(part, row)
        row += result.rows
        out.append(result.data)
        bad_rows += [e.row for e in result.errors]
    return b"".join(out) + header.line_ending, bad_rows


def test_fast_and_quoted_paths_give_the_same_rows(model: ChurnModel) -> None:
    plain = sample_bytes(200, "csv", seed=41)
    fast, _ = _score_csv(model, plain)
    quoted_input = plain.replace(b"Fiber optic", b'"Fiber optic"')
    slow, _ = _score_csv(model, quoted_input)
    assert list(csv.reader(io.StringIO(fast.decode()))) == list(csv.reader(io.StringIO(slow.decode())))


def test_crlf_and_blank_lines_are_kept_and_bad_rows_dropped(model: ChurnModel) -> None:
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


def test_ragged_rows_in_the_fast_path(model: ChurnModel) -> None:
    lines = sample_bytes(5, "csv", seed=43).decode().splitlines()
    lines[2] += ",extra"
    lines[4] = "   "
    out, bad = _score_csv(model, ("\n".join(lines) + "\n").encode())
    assert bad == [2, 4]
    assert len(out.decode().splitlines()) == 1 + 3


def test_jsonl_keys_are_checked_on_the_first_object(model: ChurnModel) -> None:
    scorer = JsonlScorer(Validator(model.spec, 20), model)
    good = sample_bytes(3, "jsonl", seed=44)
    result = scorer.score(b"not json\n" + good, 1)
    assert (result.rows, result.scored, [e.row for e in result.errors]) == (4, 3, [1])
    assert all(set(json.loads(line)) >= {"prediction", "probability"} for line in result.data.splitlines())
    with pytest.raises(ScoringError) as caught:
        JsonlScorer(Validator(model.spec, 20), model).score(b'{"a": 1}\n', 1)
    assert caught.value.code == ErrorCode.MISSING_COLUMNS
