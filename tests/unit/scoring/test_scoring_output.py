"""Predictions written by each format: labels of any type round-trip through CSV quoting and JSON escaping."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow as pa
import pytest

from scoring.service.errors import ScoringError
from scoring.service.model import output_columns
from scoring.service.output import csv_fields, csv_head, json_members, json_rows, with_predictions

LABELS = ["plain", "with, comma", 'say "hi"', "two\nlines", "cr\rhere", "ünïcode", ""]


def _labels(values: list[object]) -> pa.Table:
    picked = np.arange(len(values)) % len(values)
    return pa.table(
        {
            "prediction": pa.DictionaryArray.from_arrays(pa.array(picked.astype(np.int32)), pa.array(values)),
            "probability": pa.array(np.linspace(0.0, 1.0, len(values)) / 3),
        }
    )


def _csv_rows(head: bytes, fields: pa.Array) -> list[list[str]]:
    text = ("a" + head.decode() + "".join("\nx" + f.decode() for f in fields.to_pylist()) + "\n").encode()
    return list(csv.reader(io.StringIO(text.decode(), newline="")))


@pytest.mark.parametrize("values", [LABELS, [0, 1, 2, -5], [True, False], [1.5, 2.25]])
def test_labels_round_trip_through_csv_and_json(values: list[object]) -> None:
    table = _labels(values)
    rows = _csv_rows(csv_head(table.column_names), csv_fields(table))
    assert rows[0] == ["a", "prediction", "probability"]
    assert [r[1] for r in rows[1:]] == [str(v) for v in values]  # what csv.writer writes for each
    assert [float(r[2]) for r in rows[1:]] == table.column("probability").to_pylist()  # exact
    objects = [json.loads('{"a":1' + m.decode() + "}") for m in json_members(table).to_pylist()]
    assert [o["prediction"] for o in objects] == values
    assert [type(o["prediction"]) for o in objects] == [type(v) for v in values]
    assert json.loads(json_rows(table)) == [{k: v for k, v in o.items() if k != "a"} for o in objects]


def test_column_names_needing_quotes_are_quoted() -> None:
    table = pa.table({"band, low": ["x"], 'say "q"': [1]})
    head = csv_head(table.column_names)
    assert next(csv.reader(io.StringIO("a" + head.decode()))) == ["a", "band, low", 'say "q"']
    assert json.loads("{" + json_members(table).to_pylist()[0].decode()[1:] + "}") == {"band, low": "x", 'say "q"': 1}


def test_numbers_are_exact_and_non_finite_values_stay_readable() -> None:
    values = [0.1, 1 / 3, 1e-300, 123456789.123, float("nan"), float("inf"), None]
    table = pa.table({"prediction": pa.array(values, pa.float64())})
    texts = [f.decode()[1:] for f in csv_fields(table).to_pylist()]
    assert [float(t) for t in texts[:4]] == values[:4]
    assert texts[4:] == ["nan", "inf", ""]
    assert json.loads(json_rows(table)) == [{"prediction": v} for v in values[:4]] + [{"prediction": None}] * 3
    float32 = pa.table({"prediction": pa.array(np.asarray([0.1], dtype=np.float32))})
    assert float(csv_fields(float32).to_pylist()[0].decode()[1:]) == float(np.float32(0.1))


def test_model_results_become_columns() -> None:
    import pandas as pd

    frame = pd.DataFrame({"price": [1.5, 2.0], "band": ["low", "high, very"]})
    assert output_columns(frame, 2).column_names == ["price", "band"]
    assert output_columns({"total": [1, 2], "sign": ["+", "-"]}, 2).column_names == ["total", "sign"]
    assert output_columns(np.asarray([3.0, 4.0]), 2).column("prediction").to_pylist() == [3.0, 4.0]
    assert output_columns(np.asarray([[1.0, 2.0], [3.0, 4.0]]), 2).column_names == ["prediction_0", "prediction_1"]
    with pytest.raises(ScoringError, match="3 predictions for 2 rows"):
        output_columns([1, 2, 3], 2)


def test_columnar_outputs_append_the_columns_and_refuse_a_clash() -> None:
    rows = pa.table({"x": [1, 2]})
    combined = with_predictions(rows, pa.table({"prediction": ["a", "b"]}))
    assert combined.column_names == ["x", "prediction"]
    with pytest.raises(ScoringError, match="already has the output columns"):
        with_predictions(combined, pa.table({"prediction": ["a", "b"]}))
