"""Sync request handling without the HTTP server: text/csv bodies, JSON row shapes, and their 4xx errors."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.sklearn
import pytest

from scoring.examples.churn.sample import frame
from scoring.service.errors import RequestRejected
from scoring.service.model import ScoringModel, load_model
from scoring.service.sync_api import score_csv_body, score_sync
from scoring.service.validation import Validator


@pytest.fixture(scope="module")
def model(churn_model_dir: Path) -> ScoringModel:
    return load_model(churn_model_dir.parent)


@pytest.fixture(scope="module")
def validator(model: ScoringModel) -> Validator:
    return Validator(model.spec, 20)


def test_csv_body_appends_label_and_probability_to_every_line(
    model: ScoringModel, validator: Validator, churn_model_dir: Path
) -> None:
    data = frame(120, seed=21)
    text = data.to_csv(index=False)
    out = score_csv_body(text.encode(), model, validator, 1000).decode().splitlines()
    pipeline = mlflow.sklearn.load_model(str(churn_model_dir))
    expected = pipeline.predict_proba(data)[:, list(pipeline.classes_).index("Yes")]
    assert out[0] == text.splitlines()[0] + ",prediction,probability"
    assert len(out) == 121
    for line_in, line_out, p in zip(text.splitlines()[1:], out[1:], expected, strict=True):
        prefix, label, probability = line_out.rsplit(",", 2)
        assert prefix == line_in
        # probability is that of the predicted class
        assert label == ("Yes" if p > 0.5 else "No")
        assert abs(float(probability) - (p if label == "Yes" else 1 - p)) < 1e-9


def test_csv_body_and_csv_key_answer_the_same_text(model: ScoringModel, validator: Validator) -> None:
    text = frame(30, seed=22).to_csv(index=False)
    wrapped = json.loads(score_sync({"csv": text}, model, validator, 1000))
    assert score_csv_body(text, model, validator, 1000).decode() == wrapped["csv"]
    assert wrapped["rows"] == 30


@pytest.mark.parametrize(
    ("data", "status", "expect"),
    [
        (b"  \n", 400, "header line"),
        (b"customerID,gender\n", 400, "missing columns"),
        ("header only", 400, "missing columns"),
    ],
)
def test_bad_csv_bodies_are_rejected(
    model: ScoringModel, validator: Validator, data: bytes | str, status: int, expect: str
) -> None:
    with pytest.raises(RequestRejected) as caught:
        score_csv_body(data, model, validator, 1000)
    assert caught.value.status == status and expect in caught.value.message


def test_csv_body_without_rows_or_with_too_many(model: ScoringModel, validator: Validator) -> None:
    header = frame(1, seed=23).to_csv(index=False).splitlines()[0]
    with pytest.raises(RequestRejected, match="holds a header but no rows"):
        score_csv_body(header.encode(), model, validator, 1000)
    with pytest.raises(RequestRejected) as caught:
        score_csv_body(frame(11, seed=24).to_csv(index=False).encode(), model, validator, 10)
    assert caught.value.status == 413


def test_records_with_other_keys_than_row_one_are_named(model: ScoringModel, validator: Validator) -> None:
    records = json.loads(frame(5, seed=25).to_json(orient="records"))
    records[3] = {("tenur" if k == "tenure" else k): v for k, v in records[3].items()}
    with pytest.raises(RequestRejected) as caught:
        score_sync({"data": records}, model, validator, 1000)
    assert caught.value.status == 400 and "rows [4]" in caught.value.message


def test_strings_that_are_not_unicode_text_are_bad_rows(model: ScoringModel, validator: Validator) -> None:
    records = json.loads(frame(3, seed=26).to_json(orient="records"))
    records[1]["gender"] = "\ud800Male"  # a lone surrogate: what JSON's "\ud800" decodes to
    with pytest.raises(RequestRejected) as caught:
        score_sync({"data": records}, model, validator, 1000)
    assert caught.value.status == 400
    assert caught.value.details["row_errors"] == [
        {"row": 2, "message": "gender: '\\ud800Male' is not valid Unicode text"}
    ]
