"""Sync scoring through the real azmlinfsrv: accepted body shapes, answers that match the model, 4xx errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import mlflow.sklearn
import pandas as pd
import pytest
import requests

from scoring.examples.churn.sample import frame
from tests.fixtures.scoring import ScoringServer
from tests.support.scoring import post

pytestmark = pytest.mark.slow


def _records(rows: int, seed: int = 3) -> list[dict[str, Any]]:
    return json.loads(frame(rows, seed).to_json(orient="records"))


def _expected(model_dir: Path, records: list[dict[str, Any]]) -> list[float]:
    pipeline = mlflow.sklearn.load_model(str(model_dir))
    positive = list(pipeline.classes_).index("Yes")
    return list(pipeline.predict_proba(pd.DataFrame(records))[:, positive])


def _check_predictions(body: dict[str, Any], expected: list[float]) -> None:
    predictions = body["predictions"]
    assert len(predictions) == len(expected)
    for item, p in zip(predictions, expected, strict=True):
        assert item["prediction"] == ("Yes" if p > 0.5 else "No")
        # the probability of the predicted label
        assert math.isclose(item["probability"], p if item["prediction"] == "Yes" else 1 - p, abs_tol=1e-9)


def test_data_records_are_scored_like_the_model_scores_them(scoring_server: ScoringServer) -> None:
    records = _records(200)
    response = post(scoring_server.score_url, {"data": records})
    assert response.status_code == 200, response.text
    _check_predictions(response.json(), _expected(scoring_server.model_dir, records))
    assert {p["prediction"] for p in response.json()["predictions"]} == {"Yes", "No"}


@pytest.mark.parametrize("shape", ["mode-sync", "dataframe_records", "dataframe_split", "input_data"])
def test_mlflow_body_shapes_are_accepted(scoring_server: ScoringServer, shape: str) -> None:
    records = _records(25, seed=4)
    columns = list(records[0])
    split: dict[str, Any] = {"columns": columns, "data": [[r[c] for c in columns] for r in records]}
    bodies: dict[str, dict[str, Any]] = {
        "mode-sync": {"mode": "sync", "data": records},
        "dataframe_records": {"dataframe_records": records},
        "dataframe_split": {"dataframe_split": {**split, "index": list(range(25))}},
        "input_data": {"input_data": split},
    }
    response = post(scoring_server.score_url, bodies[shape])
    assert response.status_code == 200, response.text
    _check_predictions(response.json(), _expected(scoring_server.model_dir, records))


def test_customer_id_is_optional(scoring_server: ScoringServer) -> None:
    records = [{k: v for k, v in r.items() if k != "customerID"} for r in _records(5)]
    response = post(scoring_server.score_url, {"data": records})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 5


def _without(record: dict[str, Any], column: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != column}


def _bad_value(records: list[dict[str, Any]], row: int, column: str, value: Any) -> list[dict[str, Any]]:
    records[row][column] = value
    return records


@pytest.mark.parametrize(
    ("make_body", "status", "expect"),
    [
        (lambda: "not json at all", 400, "not JSON"),
        (lambda: "[1, 2]", 400, "JSON object"),
        (lambda: {"rows": _records(2)}, 400, "exactly one of the keys"),
        (lambda: {"data": []}, 400, "non-empty list"),
        (lambda: {"data": [1, 2]}, 400, "JSON object"),
        (
            lambda: {"data": [{k: v for k, v in r.items() if k != "tenure"} for r in _records(2)]},
            400,
            "missing columns",
        ),
        (lambda: {"data": [{**r, "Extra": 1} for r in _records(2)]}, 400, "unexpected columns"),
        (lambda: {"data": _bad_value(_records(3), 1, "tenure", "twelve")}, 400, "tenure: 'twelve' is a str"),
        (lambda: {"data": _bad_value(_records(3), 2, "Contract", "Weekly")}, 400, "'Weekly' is not one of"),
        (lambda: {"data": _bad_value(_records(3), 0, "MonthlyCharges", None)}, 400, "MonthlyCharges is missing"),
        (lambda: {"data": _bad_value(_records(3), 0, "tenure", 1.5)}, 400, "is not a whole number"),
        (lambda: json.dumps({"data": _bad_value(_records(2), 1, "MonthlyCharges", math.nan)}), 400, "not a finite"),
        (lambda: json.dumps({"data": _bad_value(_records(2), 0, "TotalCharges", math.inf)}), 400, "not a finite"),
        (lambda: {"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, 400, "missing columns"),
        (lambda: {"mode": "later", "data": _records(1)}, 400, "'mode' must be"),
        (lambda: {"data": _records(20001, seed=5)}, 413, "limit is 20000"),
    ],
)
def test_bad_sync_requests_get_a_readable_4xx(
    scoring_server: ScoringServer, make_body: Any, status: int, expect: str
) -> None:
    response = post(scoring_server.score_url, make_body())
    assert response.status_code == status, response.text
    assert expect in response.json()["message"] + json.dumps(response.json().get("row_errors", []))


def test_row_errors_name_the_row_and_the_reason(scoring_server: ScoringServer) -> None:
    records = _bad_value(_bad_value(_records(6), 1, "tenure", "x"), 4, "gender", "Other")
    response = post(scoring_server.score_url, {"data": records})
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "2 of 6 rows are invalid"
    assert [e["row"] for e in body["row_errors"]] == [2, 5]
    assert "gender: 'Other' is not one of 'Female', 'Male'" in body["row_errors"][1]["message"]


def test_server_keeps_serving_after_bad_requests(scoring_server: ScoringServer) -> None:
    for body in ("{", '{"data": 5}', '"x"'):
        assert post(scoring_server.score_url, body).status_code == 400
    assert post(scoring_server.score_url, {"data": _records(3)}).status_code == 200


def test_csv_text_body_gets_the_lines_back_with_two_fields(scoring_server: ScoringServer) -> None:
    data = frame(300, seed=6)
    text = data.to_csv(index=False)
    response = post(scoring_server.score_url, {"csv": text})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == 300
    out = body["csv"].splitlines()
    assert out[0] == text.splitlines()[0] + ",prediction,probability"
    expected = _expected(scoring_server.model_dir, json.loads(data.to_json(orient="records")))
    for line_in, line_out, p in zip(text.splitlines()[1:], out[1:], expected, strict=True):
        prefix, label, probability = line_out.rsplit(",", 2)
        assert prefix == line_in and label == ("Yes" if p > 0.5 else "No")
        assert math.isclose(float(probability), p if label == "Yes" else 1 - p, abs_tol=1e-9)  # of the label


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("", "must be CSV text"),
        ("customerID,gender\nx,Male\n", "missing columns"),
        (None, "must be CSV text"),
    ],
)
def test_bad_csv_text_bodies(scoring_server: ScoringServer, text: str | None, expect: str) -> None:
    response = post(scoring_server.score_url, {"csv": text})
    assert response.status_code == 400
    assert expect in response.json()["message"]


def test_csv_text_with_a_bad_row_names_it(scoring_server: ScoringServer) -> None:
    lines = frame(4, seed=7).to_csv(index=False).splitlines()
    lines[3] = lines[3].replace("Month-to-month", "Weekly").replace("One year", "Weekly").replace("Two year", "Weekly")
    response = post(scoring_server.score_url, {"csv": "\n".join(lines)})
    assert response.status_code == 400
    assert response.json()["row_errors"][0]["row"] == 3
    assert "'Weekly' is not one of" in response.json()["row_errors"][0]["message"]


# --------------------------------------------------------------------------------------- text/csv bodies


def _post_csv(score_url: str, data: bytes, content_type: str = "text/csv") -> requests.Response:
    return requests.post(score_url, data=data, headers={"Content-Type": content_type}, timeout=60)


@pytest.mark.parametrize("content_type", ["text/csv", "text/csv; charset=utf-8", "application/csv"])
def test_text_csv_body_is_answered_in_csv_with_two_fields_per_line(
    scoring_server: ScoringServer, content_type: str
) -> None:
    data = frame(400, seed=8)
    text = data.to_csv(index=False)
    response = _post_csv(scoring_server.score_url, text.encode(), content_type)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    out = response.text.splitlines()
    assert out[0] == text.splitlines()[0] + ",prediction,probability"
    expected = _expected(scoring_server.model_dir, json.loads(data.to_json(orient="records")))
    assert len(out) == 401
    for line_in, line_out, p in zip(text.splitlines()[1:], out[1:], expected, strict=True):
        prefix, label, probability = line_out.rsplit(",", 2)
        assert prefix == line_in and label == ("Yes" if p > 0.5 else "No")
        assert math.isclose(float(probability), p if label == "Yes" else 1 - p, abs_tol=1e-9)  # of the label


def test_text_csv_body_answers_what_the_csv_json_shape_answers(scoring_server: ScoringServer) -> None:
    text = frame(50, seed=9).to_csv(index=False)
    raw = _post_csv(scoring_server.score_url, text.encode())
    wrapped = post(scoring_server.score_url, {"csv": text})
    assert raw.status_code == wrapped.status_code == 200
    assert raw.text == wrapped.json()["csv"]


@pytest.mark.parametrize(
    ("data", "status", "expect"),
    [
        (b"", 400, "header line"),
        (b"customerID,gender\nx,Male\n", 400, "missing columns"),
        (b"\xff\xfeno,csv\n", 400, "not UTF-8"),
    ],
)
def test_bad_text_csv_bodies_get_a_readable_400(
    scoring_server: ScoringServer, data: bytes, status: int, expect: str
) -> None:
    response = _post_csv(scoring_server.score_url, data)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert expect in response.json()["message"]


def test_text_csv_bad_row_and_too_many_rows(scoring_server: ScoringServer) -> None:
    lines = frame(5, seed=10).to_csv(index=False).splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",lots"
    response = _post_csv(scoring_server.score_url, "\n".join(lines).encode())
    assert response.status_code == 400
    assert response.json()["row_errors"][0]["row"] == 2
    assert "TotalCharges: 'lots' is not a number" in response.json()["row_errors"][0]["message"]
    big = _post_csv(scoring_server.score_url, frame(20001, seed=11).to_csv(index=False).encode())
    assert big.status_code == 413 and "20000" in big.json()["message"]


def test_score_route_answers_only_post_and_options(scoring_server: ScoringServer) -> None:
    get = requests.get(scoring_server.score_url, timeout=30)
    assert get.status_code == 405 and "POST" in get.json()["message"]
    assert requests.options(scoring_server.score_url, timeout=30).status_code == 200


def test_rows_with_other_keys_than_row_one_get_a_400(scoring_server: ScoringServer) -> None:
    records = _records(4)
    records[2] = {("tenur" if k == "tenure" else k): v for k, v in records[2].items()}
    response = post(scoring_server.score_url, {"data": records})
    assert response.status_code == 400, response.text
    assert "rows [3] do not have the same columns" in response.json()["message"]
