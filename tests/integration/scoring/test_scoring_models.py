"""Any model under the real azmlinfsrv: each kind's sync JSON, text/csv and async outputs against its own predict.

Every valid model of ``tests.support.models`` (string / integer / boolean labels, labels needing CSV
quotes, a skops regressor, pyfunc models answering a DataFrame or a dict of columns) and the multiclass and
regression examples of ``scoring.examples`` (the churn example has its own tests) is served by its own
``azmlinfsrv``; its answers are compared with the model's in-process predictions on the same rows (labels
equal, numbers within 1e-9), and bad input (a wrong type, a missing and an unknown column) is refused per
row or per request with the reason. The models a service must refuse (no signature, a tensor signature)
stop the server at start with a message naming ``infer_signature``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from shared.contracts import DataFormat, ResultStatus
from tests.fixtures.azurite import Azurite
from tests.fixtures.scoring import TEST_SERVER_ENV
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.support.azmlinfsrv import ScoringServer, ServerStartError, start_scoring_server
from tests.support.models import CLASSIFIER, COLUMNS, FRAME, REGRESSOR, TENSOR_SIGNATURE, VALID_NAMES, UserModel
from tests.support.scoring import output_bytes, post, result_of_request, submit

pytestmark = pytest.mark.slow

TOLERANCE = 1e-9


EXAMPLES = ("multiclass", "regression")


def example_model(kind: str, out: Path) -> UserModel:
    """An example of ``scoring.examples`` trained as ``python -m scoring.train --kind`` does, with rows to score."""
    import mlflow.sklearn

    from scoring.examples import examples

    example = examples()[kind]
    example.train(out, None, None)
    inputs = example.frame(40, 3)
    if kind == "multiclass":
        classes = tuple(mlflow.sklearn.load_model(str(out)).classes_)
        return UserModel(f"example-{kind}", out, CLASSIFIER, inputs, classes=classes)
    return UserModel(f"example-{kind}", out, REGRESSOR, inputs)


@pytest.fixture(scope="module", params=[*VALID_NAMES, *(f"example:{kind}" for kind in EXAMPLES)])
def served(
    request: pytest.FixtureRequest,
    user_model: Callable[[str], UserModel],
    scoring_server_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[UserModel, ScoringServer]]:
    name: str = request.param
    if name.startswith("example:"):
        kind = name.removeprefix("example:")
        model = example_model(kind, tmp_path_factory.mktemp("examples") / kind)
    else:
        model = user_model(name)
    log = tmp_path_factory.mktemp("model-servers") / f"{model.name}.log"
    server = start_scoring_server(model.path, log, scoring_server_env)
    try:
        yield model, server
    finally:
        server.stop()


def expected(model: UserModel, rows: pd.DataFrame) -> dict[str, list[Any]]:
    """The model's own output columns for ``rows``, as the table in shared.contracts says they are written."""
    answer = model.predict(rows)
    if model.kind == CLASSIFIER:
        labels = pd.Series(answer).tolist()
        proba = model.predict_proba(rows)
        classes = list(model.classes)
        return {"prediction": labels, "probability": [proba[i, classes.index(v)] for i, v in enumerate(labels)]}
    if model.kind == REGRESSOR:
        return {"prediction": pd.Series(np.asarray(answer).ravel()).tolist()}
    if model.kind == FRAME:
        return {name: answer[name].tolist() for name in answer.columns}
    assert model.kind == COLUMNS
    return {name: pd.Series(values).tolist() for name, values in answer.items()}


def _same(got: Any, want: Any, *, text: bool) -> bool:
    if isinstance(want, float):
        return math.isclose(float(got), want, rel_tol=0, abs_tol=TOLERANCE)
    return got == (str(want) if text else want)


def check_columns(got: dict[str, list[Any]], want: dict[str, list[Any]], *, text: bool = False) -> None:
    assert list(got) == list(want)
    for name, values in want.items():
        assert len(got[name]) == len(values)
        bad = [(i, g, w) for i, (g, w) in enumerate(zip(got[name], values, strict=True)) if not _same(g, w, text=text)]
        assert not bad, f"{name}: (row, served, model) {bad[:5]}"


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON values (bools as bools, floats in full)."""
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in rows.to_dict("records")]


def _parquet(rows: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), out, row_group_size=max(1, len(rows) // 3))
    return out.getvalue()


def _csv_columns(text: str, names: list[str]) -> dict[str, list[str]]:
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    return {name: [row[name] for row in table] for name in names}


def test_sync_json_shapes_answer_what_the_model_predicts(served: tuple[UserModel, ScoringServer]) -> None:
    model, server = served
    rows = model.inputs
    want = expected(model, rows)
    records = _records(rows)
    columns = list(rows.columns)
    bodies = {
        "dataframe_split": {
            "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}
        },
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: [r[c] for r in records] for c in columns}},
        "data": {"data": records},
    }
    answers = {}
    for shape, body in bodies.items():
        response = post(server.score_url, body)
        assert response.status_code == 200, f"{shape}: {response.text}"
        answers[shape] = response.json()["predictions"]
    first = answers["dataframe_split"]
    assert all(a == first for a in answers.values()), "every body shape answers the same"
    check_columns({name: [p[name] for p in first] for name in want}, want)
    assert all(list(p) == list(want) for p in first)


def test_text_csv_body_appends_the_model_columns(served: tuple[UserModel, ScoringServer]) -> None:
    model, server = served
    rows = model.inputs
    text = rows.to_csv(index=False)
    response = requests.post(server.score_url, data=text.encode(), headers={"Content-Type": "text/csv"}, timeout=60)
    assert response.status_code == 200, response.text
    want = expected(model, rows)
    lines = response.text.splitlines()
    assert next(csv.reader([lines[0]])) == [*rows.columns, *want]
    check_columns(_csv_columns(response.text, list(want)), want, text=True)
    inputs = _csv_columns(response.text, list(rows.columns))
    assert inputs == _csv_columns(text, list(rows.columns))  # the input fields come back as they were


@pytest.mark.parametrize("fmt", [DataFormat.CSV, DataFormat.JSONL, DataFormat.PARQUET])
def test_async_outputs_match_the_model(
    served: tuple[UserModel, ScoringServer], azurite: Azurite, servicebus: ServiceBusEmulator, fmt: DataFormat
) -> None:
    model, server = served
    rows = model.inputs
    if fmt == DataFormat.CSV:
        data = rows.to_csv(index=False).encode()
    elif fmt == DataFormat.JSONL:
        data = "".join(json.dumps(r) + "\n" for r in _records(rows)).encode()
    else:
        data = _parquet(rows)
    name = f"{model.name}-{uuid.uuid4().hex[:8]}.{fmt.value}"
    request = submit(server.score_url, azurite, name, data, fmt)
    result = result_of_request(servicebus.connection_string, request)
    assert result.status == ResultStatus.SUCCEEDED, result.error
    assert (result.rows_scored, result.rows_failed) == (len(rows), 0)
    want = expected(model, rows)
    if fmt == DataFormat.PARQUET:
        table = pq.read_table(io.BytesIO(output_bytes(result))).to_pandas()
        assert list(table.columns) == [*rows.columns, *want]
        pd.testing.assert_frame_equal(table[list(rows.columns)], rows, check_dtype=False)
        check_columns({name: table[name].tolist() for name in want}, want)
        return
    out = output_bytes(result).decode()
    if fmt == DataFormat.CSV:
        check_columns(_csv_columns(out, list(want)), want, text=True)
    else:
        objects = [json.loads(line) for line in out.splitlines()]
        assert [{k: o[k] for k in rows.columns} for o in objects] == _records(rows)
        check_columns({name: [o[name] for o in objects] for name in want}, want)


def _wrong_type(rows: pd.DataFrame) -> tuple[str, Any]:
    """A column and a value of the wrong type for it (text for a number, a number for text or a flag)."""
    for column in rows.columns:
        if pd.api.types.is_bool_dtype(rows[column]):
            return column, "maybe"
        if pd.api.types.is_numeric_dtype(rows[column]):
            return column, "not a number"
    return str(rows.columns[0]), 12.5


def test_bad_rows_and_columns_are_refused_with_the_reason(
    served: tuple[UserModel, ScoringServer], azurite: Azurite, servicebus: ServiceBusEmulator
) -> None:
    model, server = served
    records = _records(model.inputs.head(6))
    column, value = _wrong_type(model.inputs)
    records[2][column] = value
    response = post(server.score_url, {"dataframe_records": records})
    assert response.status_code == 400
    (error,) = response.json()["row_errors"]
    assert error["row"] == 3 and column in error["message"]

    missing = [{k: v for k, v in r.items() if k != column} for r in _records(model.inputs.head(2))]
    response = post(server.score_url, {"dataframe_records": missing})
    assert response.status_code == 400 and "missing columns" in response.json()["message"]
    unknown = [{**r, "surprise": 1} for r in _records(model.inputs.head(2))]
    response = post(server.score_url, {"dataframe_records": unknown})
    assert response.status_code == 400 and "unexpected columns: ['surprise']" in response.json()["message"]

    # In a file, the bad row is reported and the good rows are scored.
    text = pd.DataFrame(records).to_csv(index=False).encode()
    name = f"{model.name}-bad-{uuid.uuid4().hex[:8]}.csv"
    request = submit(server.score_url, azurite, name, text, DataFormat.CSV)
    result = result_of_request(servicebus.connection_string, request)
    assert result.status == ResultStatus.SUCCEEDED, result.error
    assert (result.rows_scored, result.rows_failed) == (5, 1)
    assert result.row_errors[0].row == 3 and column in result.row_errors[0].message
    good = model.inputs.head(6).drop(index=2)
    want = expected(model, good)
    check_columns(_csv_columns(output_bytes(result).decode(), list(want)), want, text=True)


@pytest.mark.parametrize("name", ["no_signature", TENSOR_SIGNATURE])
def test_models_without_a_column_signature_stop_the_start(
    name: str, user_model: Callable[[str], UserModel], tmp_path: Path
) -> None:
    model = user_model(name)
    log = tmp_path / "server.log"
    with pytest.raises(ServerStartError, match="exited"):
        start_scoring_server(model.path, log, dict(TEST_SERVER_ENV))
    text = log.read_text(errors="replace")
    assert "infer_signature" in text and ("no signature" in text or "tensor-based" in text)
