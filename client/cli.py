"""Argument parsing for ``asyncinfer``: subcommands, their flags, and the flags that override settings."""

from __future__ import annotations

import argparse
import re
import uuid
from pathlib import Path

from client.errors import UsageError
from shared.contracts import DEFAULT_MODEL
from shared.routes import route_name_problem

SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # Service Bus allows 128 chars; blob metadata wants ASCII

# flag destination -> setting name it overrides
SETTING_FLAGS: dict[str, str] = {
    "storage": "DataStorage",
    "servicebus": "ServiceBus",
    "input_container": "INPUT_CONTAINER",
    "result_topic": "RESULT_TOPIC",
    "subscription": "CLIENT_SUBSCRIPTION",
    "scoring_uri": "SCORING_URI",
    "scoring_key": "SCORING_KEY",
    "functions_url": "FUNCTIONS_URL",
    "functions_key": "FUNCTIONS_KEY",
}


class _ArgumentParser(argparse.ArgumentParser):
    """Raises UsageError instead of exiting, so main() prints one line and returns exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _common() -> _ArgumentParser:
    common = _ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    common.add_argument("--debug", action="store_true", help="show tracebacks and SDK logging")
    conn = common.add_argument_group("settings (default: environment, else the local stack)")
    conn.add_argument("--settings", type=Path, metavar="FILE", help="read settings from a local.settings.json")
    conn.add_argument("--storage", metavar="CONN", help="DataStorage: connection string or blob service URL")
    conn.add_argument("--servicebus", metavar="CONN", help="ServiceBus: connection string or namespace host")
    conn.add_argument("--input-container", metavar="NAME", help="INPUT_CONTAINER")
    conn.add_argument("--result-topic", metavar="NAME", help="RESULT_TOPIC")
    conn.add_argument("--subscription", metavar="NAME", help="CLIENT_SUBSCRIPTION")
    conn.add_argument("--scoring-uri", metavar="URL", help="SCORING_URI")
    conn.add_argument("--scoring-key", metavar="KEY", help="SCORING_KEY")
    conn.add_argument("--functions-url", metavar="URL", help="FUNCTIONS_URL")
    conn.add_argument("--functions-key", metavar="KEY", help="FUNCTIONS_KEY")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _ArgumentParser(prog="asyncinfer", description="Submit files for asynchronous scoring and follow them.")
    subs = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    submit = subs.add_parser("submit", parents=[common], help="upload CSV / JSON Lines files for scoring")
    submit.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help=".csv, .jsonl or .ndjson (optionally .gz), or .parquet"
    )
    submit.add_argument("--wait", action="store_true", help="wait for the results and save the predictions")
    submit.add_argument("--session", metavar="ID", help="session id for the results (default: a new one)")
    submit.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="ROUTE", help=f"model route (default {DEFAULT_MODEL})"
    )
    submit.add_argument("--timeout", type=_positive, default=600.0, metavar="S", help="seconds to wait (default 600)")
    submit.add_argument("--out", type=Path, metavar="DIR", help="save outputs here (default: beside each input)")
    submit.add_argument("--prefix", metavar="PATH", help="blob name prefix in the input container")

    score = subs.add_parser("score", parents=[common], help="score rows synchronously (small batches)")
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, metavar="FILE", help="a CSV / JSON Lines file")
    source.add_argument("--rows", metavar="JSON", help="a JSON object or array of objects ('-' reads stdin)")
    score.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="ROUTE",
        help=f"model route whose scoring URI to call, SCORING_URI__<ROUTE> (default {DEFAULT_MODEL}: SCORING_URI)",
    )
    score.add_argument("--columns", metavar="A,B", help="input columns to show beside the predictions")
    score.add_argument("--max-rows", type=int, default=1000, metavar="N", help="refuse more rows (default 1000)")
    score.add_argument("--timeout", type=_positive, default=60.0, metavar="S", help="HTTP timeout (default 60)")

    status = subs.add_parser("status", parents=[common], help="show one request's state")
    status.add_argument("request_id", metavar="REQUEST_ID")

    watch = subs.add_parser("watch", parents=[common], help="follow requests until all are finished")
    watch.add_argument("request_ids", nargs="*", metavar="REQUEST_ID", help="ids (default: read from stdin)")
    watch.add_argument("--interval", type=_positive, default=2.0, metavar="S", help="poll interval (default 2)")
    watch.add_argument("--timeout", type=_positive, metavar="S", help="give up after S seconds (exit 3)")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.command in ("submit", "score") and (problem := route_name_problem(args.model)):
        raise UsageError(f"--model: {problem}")
    if args.command == "submit":
        if args.session is None:
            args.session = uuid.uuid4().hex
        elif not SESSION_ID.match(args.session):
            raise UsageError(f"--session {args.session!r}: use up to 128 letters, digits, '.', '_', ':' or '-'")
    if args.command == "score" and args.max_rows <= 0:
        raise UsageError("--max-rows must be positive")
    return args


def setting_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    return {name: getattr(args, dest, None) for dest, name in SETTING_FLAGS.items()}
