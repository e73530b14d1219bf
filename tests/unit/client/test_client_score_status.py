"""`score`, `status` and `watch` through client.app.run with fakes of the scoring and status ports."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from client_fakes import World

from client.app import run
from client.errors import ScoringRejected
from client.score_cmd import normalize
from client.status_cmd import UNKNOWN_GRACE_SECONDS, ids_from_text

ROWS = [{"customerID": "A-1", "tenure": 3}, {"customerID": "B-2", "tenure": 40}]


def echo_scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"predictions": [{"prediction": i % 2, "probability": 0.25 + i / 10} for i, _ in enumerate(rows)]}


def test_score_rows_prints_a_table_with_the_id_column() -> None:
    world = World()
    world.scoring.answer = echo_scores
    assert run(["score", "--rows", json.dumps(ROWS)], world.console(), world.adapters(), env={}) == 0
    assert world.scoring.seen == [ROWS]
    lines = world.out.getvalue().splitlines()
    assert lines[0].split() == ["row", "customerID", "prediction", "probability", "error"]
    assert lines[2].split() == ["1", "A-1", "0", "0.2500"]
    assert lines[3].split() == ["2", "B-2", "1", "0.3500"]
    assert lines[-1] == "2 scored, 0 failed (model route default)"


def test_score_file_json_output_and_row_errors_exit_1(tmp_path: Path) -> None:
    world = World()
    (tmp_path / "a.csv").write_text("customerID,tenure\nA-1,3\nB-2,x\n")
    world.scoring.answer = {
        "predictions": [{"prediction": 1, "probability": 0.9}],
        "row_errors": [{"row": 2, "message": "tenure: not a number"}],
    }
    code = run(
        ["score", str(tmp_path / "a.csv"), "--json", "--columns", "tenure"], world.console(), world.adapters(), env={}
    )
    assert code == 1
    assert world.scoring.seen == [[{"customerID": "A-1", "tenure": 3}, {"customerID": "B-2", "tenure": "x"}]]
    doc = json.loads(world.out.getvalue())
    assert doc["rows_scored"] == 1 and doc["rows_failed"] == 1
    assert doc["rows"][0] == {"row": 1, "tenure": 3, "prediction": 1, "probability": 0.9, "error": None}
    assert doc["rows"][1]["error"] == "tenure: not a number"


def test_score_reads_rows_from_stdin_and_refuses_bad_input() -> None:
    world = World(stdin=io.StringIO(json.dumps(ROWS[0])))
    world.scoring.answer = [{"prediction": 0, "probability": 0.1}]
    assert run(["score", "--rows", "-"], world.console(), world.adapters(), env={}) == 0
    assert world.scoring.seen == [[ROWS[0]]]
    for argv in (["score", "--rows", "[1, 2]"], ["score", "--rows", "{oops"], ["score"], ["score", "nope.csv"]):
        assert run(argv, world.console(), world.adapters(), env={}) == 2, argv
    assert run(["score", "--rows", json.dumps(ROWS), "--max-rows", "1"], world.console(), world.adapters(), env={}) == 2


@pytest.mark.parametrize(
    "answer",
    [
        [{"prediction": 1, "probability": 0.7}, {"prediction": 0, "probability": 0.2}],
        {"results": [{"prediction": 1, "probability": 0.7}, {"prediction": 0, "probability": 0.2}]},
        {"predictions": [1, 0], "probabilities": [0.7, 0.2]},
    ],
)
def test_normalize_accepts_the_common_answer_shapes(answer: Any) -> None:
    assert [(s.prediction, s.probability, s.error) for s in normalize(answer, 2)] == [(1, 0.7, None), (0, 0.2, None)]


def test_score_prints_and_returns_whatever_columns_the_model_returns() -> None:
    world = World()
    world.scoring.answer = {
        "predictions": [
            {"prediction": "virginica", "probability": 0.8, "probability_setosa": 0.05, "probability_virginica": 0.8},
            {
                "prediction": "setosa, wild",
                "probability": 0.9,
                "probability_setosa": 0.9,
                "probability_virginica": 0.02,
            },
        ]
    }
    assert run(["score", "--rows", json.dumps(ROWS)], world.console(), world.adapters(), env={}) == 0
    lines = world.out.getvalue().splitlines()
    assert lines[0].split() == ["row", "customerID", "prediction", "probability", "probability_setosa",
                                "probability_virginica", "error"]  # fmt: skip
    assert "setosa, wild" in lines[3]
    world = World()
    world.scoring.answer = [{"prediction": 12.5}, {"prediction": -3.25}]  # a regressor: prediction only
    assert run(["score", "--rows", json.dumps(ROWS), "--json"], world.console(), world.adapters(), env={}) == 0
    doc = json.loads(world.out.getvalue())
    assert [r["prediction"] for r in doc["rows"]] == [12.5, -3.25]
    assert "probability" not in doc["rows"][0]
    world = World()
    world.scoring.answer = [{"label": "a", "score": 1}, {"label": "b", "score": 2}]  # a pyfunc's own columns
    assert run(["score", "--rows", json.dumps(ROWS), "--json"], world.console(), world.adapters(), env={}) == 0
    assert json.loads(world.out.getvalue())["rows"][1] == {"row": 2, "customerID": "B-2", "label": "b", "score": 2,
                                                            "error": None}  # fmt: skip


def test_score_model_picks_that_routes_scoring_uri_and_never_the_default_one() -> None:
    world = World()
    world.scoring.answer = echo_scores
    env = {"SCORING_URI": "http://default:1/score", "SCORING_URI__FRAUD_V2": "http://fraud:2/score",
           "SCORING_DEPLOYMENT__FRAUD_V2": "fraud-v2", "SCORING_KEY": "k"}  # fmt: skip
    assert (
        run(["score", "--rows", json.dumps(ROWS), "--model", "fraud-v2"], world.console(), world.adapters(), env) == 0
    )
    chosen = world.settings_seen[-1]
    assert (chosen.scoring_uri, chosen.scoring_deployment, chosen.scoring_key) == (
        "http://fraud:2/score", "fraud-v2", "k")  # fmt: skip
    assert world.out.getvalue().splitlines()[-1].endswith("(model route fraud-v2)")
    assert run(["score", "--rows", json.dumps(ROWS)], world.console(), world.adapters(), env) == 0
    assert world.settings_seen[-1].scoring_uri == "http://default:1/score"
    lonely = World()
    code = run(["score", "--rows", json.dumps(ROWS), "--model", "other"], lonely.console(), lonely.adapters(), env)
    assert code == 2 and lonely.scoring.seen == []
    assert "SCORING_URI__OTHER (the scoring URI of model route other) is not set" in lonely.err.getvalue()
    assert run(["score", "--rows", "{}", "--model", "Bad_Name"], lonely.console(), lonely.adapters(), env) == 2
    assert "route name 'Bad_Name'" in lonely.err.getvalue()


def test_normalize_marks_missing_predictions() -> None:
    scored = normalize([{"prediction": 1, "probability": 0.5}], 2)
    assert scored[1].error == "no prediction returned for this row"


def test_status_exit_code_follows_the_state() -> None:
    world = World()
    world.status.records = {
        "r-ok": [{"request_id": "r-ok", "state": "succeeded", "input_name": "a.csv", "rows_scored": 5}],
        "r-bad": [{"request_id": "r-bad", "state": "failed", "error_code": "too_large", "error_message": "big"}],
        "r-run": [{"request_id": "r-run", "state": "accepted"}],
    }
    console = world.console()
    assert run(["status", "r-ok"], console, world.adapters(), env={}) == 0
    assert "r-ok: succeeded" in world.out.getvalue() and "input_name: a.csv" in world.out.getvalue()
    assert run(["status", "r-bad"], console, world.adapters(), env={}) == 1
    assert "error_code: too_large" in world.out.getvalue()
    assert run(["status", "r-run"], console, world.adapters(), env={}) == 0
    fresh = World()
    assert run(["status", "nope", "--json"], fresh.console(), fresh.adapters(), env={}) == 1
    assert json.loads(fresh.out.getvalue()) == {"request_id": "nope", "state": "unknown", "record": None}


def test_watch_polls_until_terminal_and_prints_changes_as_lines() -> None:
    world = World()
    world.status.records = {
        "r1": [None, {"state": "submitted"}, {"state": "accepted"}, {"state": "succeeded", "rows_scored": 7}],
        "r2": [
            {"state": "accepted", "input_name": "b.csv"},
            {"state": "failed", "input_name": "b.csv", "error_message": "boom", "error_code": "x"},
        ],
    }
    code = run(["watch", "r1", "r2", "--interval", "3"], world.console(), world.adapters(), env={})
    assert code == 1  # r2 failed
    lines = world.out.getvalue().splitlines()
    assert lines[0].startswith("r1  unknown") and lines[1] == "r2  accepted  b.csv"
    assert "r1  succeeded    7 rows scored" in lines and "r2  failed  b.csv  boom [x]" in lines
    assert world.status.calls.count("r2") == 2  # a terminal request is not polled again
    assert world.clock.now == 1000.0 + 3 * 3


def test_watch_times_out_with_exit_3_and_gives_up_on_unknown_ids() -> None:
    world = World()
    world.status.records = {"slow": [{"state": "accepted"}]}
    assert run(["watch", "slow", "--timeout", "10", "--json"], world.console(), world.adapters(), env={}) == 3
    doc = json.loads(world.out.getvalue())
    assert doc["timed_out"] is True and doc["requests"][0]["state"] == "accepted"

    world = World()
    assert run(["watch", "ghost"], world.console(), world.adapters(), env={}) == 1
    assert world.clock.now - 1000.0 >= UNKNOWN_GRACE_SECONDS


def test_watch_redraws_in_place_on_a_terminal() -> None:
    world = World()
    world.status.records = {"r1": [{"state": "accepted"}, {"state": "succeeded"}]}
    console = world.console()
    console.out_is_tty = True
    assert run(["watch", "r1"], console, world.adapters(), env={}) == 0
    out = world.out.getvalue()
    assert out.count("request") == 2 and "\x1b[3F\x1b[J" in out


def test_watch_reads_ids_from_a_piped_submit_document() -> None:
    document = {"files": [{"request_id": "r1"}, {"request_id": None}, {"request_id": "r2"}]}
    assert ids_from_text(json.dumps(document)) == ["r1", "r2"]
    assert ids_from_text(" r1\nr2 ") == ["r1", "r2"]
    world = World(stdin=io.StringIO(json.dumps(document)), stdin_is_tty=False)
    world.status.records = {"r1": [{"state": "succeeded"}], "r2": [{"state": "succeeded"}]}
    assert run(["watch"], world.console(), world.adapters(), env={}) == 0
    assert run(["watch"], World().console(), world.adapters(), env={}) == 2  # a terminal, no ids


def test_rejected_rows_are_listed_and_exit_1() -> None:
    rejection = ScoringRejected(400, "1 of 2 rows are invalid", None, [{"row": 2, "message": "tenure: not a number"}])
    world = World()
    world.scoring.answer = rejection
    assert run(["score", "--rows", json.dumps(ROWS)], world.console(), world.adapters(), env={}) == 1
    err = world.err.getvalue()
    assert "rejected the request (400): 1 of 2 rows are invalid" in err and "row 2: tenure: not a number" in err

    world = World()
    world.scoring.answer = ScoringRejected(400, "missing columns: ['tenure']", "missing_columns", [])
    assert run(["score", "--rows", json.dumps(ROWS), "--json"], world.console(), world.adapters(), env={}) == 1
    assert json.loads(world.out.getvalue())["error"] == {
        "status": 400,
        "code": "missing_columns",
        "message": "missing columns: ['tenure']",
    }
