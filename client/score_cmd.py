"""``asyncinfer score``: send rows to a model route's scoring URI in sync mode and print a table (or JSON).

``--model NAME`` picks the route's URI (``SCORING_URI__<NAME>``, see :mod:`client.settings`). The answer is
read tolerantly: a list of per-row objects, or an object holding them under ``predictions`` / ``results``,
each with whatever columns the model returns (``prediction``, ``probability``, one column per class, a
regressor's ``prediction`` alone, a pyfunc's own columns), or bare values with an optional ``probabilities``
list; per-row errors as ``row_errors`` (``row`` 1-based, ``message``) or ``error`` on the row itself. Every
column returned is printed and saved, in the order the model gave them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from client.adapters import Adapters
from client.console import Console
from client.errors import ExitCode, ScoringRejected, ServiceError, UsageError
from client.localfiles import LocalRejection, read_rows
from client.render import table
from client.settings import ClientSettings
from shared.config import SettingsError
from shared.contracts import PREDICTION_COLUMN, PROBABILITY_COLUMN
from shared.routes import setting_suffix


@dataclass(frozen=True)
class ScoredRow:
    row: int  # 1-based
    values: dict[str, Any] = field(default_factory=dict)  # the columns the model returned for this row
    error: str | None = None

    @property
    def prediction(self) -> Any:
        return self.values.get(PREDICTION_COLUMN)

    @property
    def probability(self) -> Any:
        return self.values.get(PROBABILITY_COLUMN)


def parse_rows_argument(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--rows: not valid JSON ({exc.msg} at position {exc.pos})") from None
    rows = [value] if isinstance(value, dict) else value
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise UsageError("--rows: expected a JSON object or a non-empty array of objects")
    return rows


def load_rows(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    if args.rows is not None:
        rows = parse_rows_argument(console.stdin.read() if args.rows == "-" else args.rows)
        if len(rows) > args.max_rows:
            raise UsageError(f"--rows: {len(rows)} rows is over --max-rows {args.max_rows}; use submit")
        return rows
    if not args.file.is_file():
        raise UsageError(f"{args.file}: no such file")
    try:
        return read_rows(args.file, args.max_rows)
    except LocalRejection as exc:
        raise UsageError(f"{args.file}: {exc.message} [{exc.code.value}]") from None


def _row_list(answer: Any) -> list[Any]:
    if isinstance(answer, list):
        return answer
    if isinstance(answer, dict):
        for key in ("predictions", "results", "rows", "data"):
            if isinstance(answer.get(key), list):
                return list(answer[key])
    raise ServiceError(f"the scoring endpoint answered in an unexpected shape: {json.dumps(answer)[:200]}")


def normalize(answer: Any, count: int) -> list[ScoredRow]:
    """One ScoredRow per input row, whatever shape of answer the scoring route gave."""
    errors: dict[int, str] = {}
    if isinstance(answer, dict):
        for item in answer.get("row_errors") or answer.get("errors") or []:
            if isinstance(item, dict) and isinstance(item.get("row"), int):
                errors[item["row"]] = str(item.get("message", "rejected"))
    items = _row_list(answer)
    probabilities = answer.get("probabilities") if isinstance(answer, dict) else None
    scored: list[ScoredRow] = []
    good = iter(items)
    for number in range(1, count + 1):
        if number in errors:
            scored.append(ScoredRow(row=number, error=errors[number]))
            continue
        item = next(good, None)
        if isinstance(item, dict):
            if item.get("error"):
                scored.append(ScoredRow(row=number, error=str(item["error"])))
                continue
            scored.append(ScoredRow(number, {k: v for k, v in item.items() if k != "error"}))
        elif item is not None:
            values = {PREDICTION_COLUMN: item}
            prob = probabilities[len(scored) - len(errors)] if isinstance(probabilities, list) else None
            if prob is not None:
                values[PROBABILITY_COLUMN] = prob
            scored.append(ScoredRow(number, values))
        else:
            scored.append(ScoredRow(row=number, error="no prediction returned for this row"))
    return scored


def _report_rejection(exc: ScoringRejected, as_json: bool, console: Console) -> ExitCode:
    """The rows were refused as a whole (a sync caller gets all rows scored or none): say why, row by row."""
    if as_json:
        error = {"status": exc.status, "code": exc.code, "message": exc.message}
        console.print_json({"rows": [], "error": error, "row_errors": exc.row_errors})
        return ExitCode.FAILED
    console.err.write(f"asyncinfer: error: {exc}\n")
    for item in exc.row_errors:
        console.err.write(f"  row {item.get('row', '?')}: {item.get('message', '')}\n")
    return ExitCode.FAILED


def output_columns(scored: list[ScoredRow]) -> list[str]:
    """Every column the model returned, in the order it first appears."""
    return list(dict.fromkeys(key for s in scored for key in s.values))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def run_score(args: argparse.Namespace, settings: ClientSettings, adapters: Adapters, console: Console) -> ExitCode:
    rows = load_rows(args, console)
    if settings.scoring_uri is None:
        raise SettingsError(
            f"setting SCORING_URI__{setting_suffix(args.model)} (the scoring URI of model route {args.model}) is not "
            "set; on the local stack: python -m client score ... --settings .devstack/client.settings.json"
        )
    try:
        answer = adapters.scoring(settings, args.timeout).score(rows)
    except ScoringRejected as exc:
        return _report_rejection(exc, args.json, console)
    scored = normalize(answer, len(rows))
    if args.columns:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    else:  # show an id column when there is one, so rows can be told apart
        columns = [k for k in rows[0] if k.lower().endswith("id")][:1]
    outputs = output_columns(scored)
    failed = sum(1 for s in scored if s.error)
    if args.json:
        console.print_json(
            {
                "model": args.model,
                "rows": [
                    {
                        "row": s.row,
                        **{c: rows[s.row - 1].get(c) for c in columns},
                        **{c: s.values.get(c) for c in outputs},
                        "error": s.error,
                    }
                    for s in scored
                ],
                "rows_scored": len(scored) - failed,
                "rows_failed": failed,
            }
        )
    else:
        body = [
            [
                str(s.row),
                *(str(rows[s.row - 1].get(c, "")) for c in columns),
                *(_cell(s.values.get(c)) for c in outputs),
                s.error or "",
            ]
            for s in scored
        ]
        for line in table(["row", *columns, *outputs, "error"], body):
            console.print(line)
        console.print(f"{len(scored) - failed} scored, {failed} failed (model route {args.model})")
    return ExitCode.FAILED if failed else ExitCode.OK
