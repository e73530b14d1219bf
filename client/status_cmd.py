"""``asyncinfer status`` and ``watch``: read request records from the function app's status endpoint.

A record is the function app's ledger view of one request; the client relies only on ``state`` (one of
:class:`shared.contracts.RequestState`) and shows ``input_name``, ``rows_scored`` / ``rows_failed`` and
``error_code`` / ``error_message`` when present (``status`` prints every field).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from client.adapters import Adapters
from client.console import Console
from client.errors import ExitCode, UsageError
from client.ports import StatusSource
from client.render import table
from client.settings import ClientSettings
from shared.contracts import RequestState

TERMINAL = {RequestState.SUCCEEDED.value, RequestState.FAILED.value}
UNKNOWN = "unknown"
# A request the ledger has not recorded yet is normal for a few seconds after upload; after this long
# the id is taken to be wrong.
UNKNOWN_GRACE_SECONDS = 60.0


def state_of(record: dict[str, Any] | None) -> str:
    if record is None:
        return UNKNOWN
    return str(record.get("state") or record.get("status") or UNKNOWN).lower()


def detail_of(record: dict[str, Any] | None) -> str:
    if record is None:
        return "no such request (yet)"
    if record.get("error_code") or record.get("error_message"):
        return f"{record.get('error_message') or ''} [{record.get('error_code') or '?'}]".strip()
    if record.get("rows_scored") is not None:
        failed = record.get("rows_failed") or 0
        return f"{record['rows_scored']} rows scored" + (f", {failed} skipped" if failed else "")
    return ""


def name_of(record: dict[str, Any] | None) -> str:
    if record is None:
        return ""
    return str(record.get("input_name") or record.get("blob_name") or "")


def run_status(args: argparse.Namespace, settings: ClientSettings, adapters: Adapters, console: Console) -> ExitCode:
    record = adapters.status(settings).get(args.request_id)
    state = state_of(record)
    if args.json:
        console.print_json({"request_id": args.request_id, "state": state, "record": record})
    elif record is None:
        console.print(f"{args.request_id}: no such request")
    else:
        console.print(f"{args.request_id}: {state}")
        for key, value in record.items():
            if key not in ("request_id", "state") and value not in (None, "", [], {}):
                shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value
                console.print(f"  {key}: {shown}")
    return ExitCode.FAILED if state in (UNKNOWN, RequestState.FAILED.value) else ExitCode.OK


def ids_from_text(text: str) -> list[str]:
    """Request ids piped in: a ``submit --json`` document, or ids separated by whitespace."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except json.JSONDecodeError:
            raise UsageError("stdin: looks like JSON but is not valid JSON") from None
        files = document.get("files") if isinstance(document, dict) else None
        return [str(f["request_id"]) for f in files or [] if isinstance(f, dict) and f.get("request_id")]
    return stripped.split()


def watch_rows(ids: list[str], records: dict[str, dict[str, Any] | None]) -> list[str]:
    body = [[rid, state_of(records.get(rid)), name_of(records.get(rid)), detail_of(records.get(rid))] for rid in ids]
    return table(["request", "state", "input", "detail"], body)


def poll(
    source: StatusSource,
    ids: list[str],
    interval: float,
    timeout: float | None,
    on_change: Callable[[dict[str, dict[str, Any] | None]], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, dict[str, Any] | None], bool]:
    """Poll until every id is terminal (or unknown past the grace period); returns (records, timed_out)."""
    started = clock()
    records: dict[str, dict[str, Any] | None] = {}
    while True:
        changed = False
        for rid in ids:
            if rid in records and state_of(records[rid]) in TERMINAL:
                continue
            record = source.get(rid)
            if rid not in records or record != records[rid]:
                changed = True
            records[rid] = record
        if changed:
            on_change(records)
        elapsed = clock() - started
        open_ids = [
            rid
            for rid in ids
            if state_of(records[rid]) not in TERMINAL
            and not (records[rid] is None and elapsed >= UNKNOWN_GRACE_SECONDS)
        ]
        if not open_ids:
            return records, False
        if timeout is not None and elapsed >= timeout:
            return records, True
        sleep(interval if timeout is None else max(0.0, min(interval, timeout - elapsed)))


class _Screen:
    """Draws the watch table: redrawn in place on a terminal, changed rows as lines otherwise."""

    def __init__(self, console: Console, ids: list[str]) -> None:
        self.console, self.ids = console, ids
        self.drawn = 0
        self.last: dict[str, str] = {}

    def update(self, records: dict[str, dict[str, Any] | None]) -> None:
        if self.console.out_is_tty:
            lines = watch_rows(self.ids, records)
            if self.drawn:
                self.console.out.write(f"\x1b[{self.drawn}F\x1b[J")  # back to the table's first line, clear below
            self.console.print("\n".join(lines))
            self.drawn = len(lines)
            return
        for rid in self.ids:
            line = f"{rid}  {state_of(records.get(rid))}  {name_of(records.get(rid))}  {detail_of(records.get(rid))}"
            if self.last.get(rid) != line:
                self.last[rid] = line
                self.console.print(line.rstrip())


def run_watch(args: argparse.Namespace, settings: ClientSettings, adapters: Adapters, console: Console) -> ExitCode:
    ids = list(args.request_ids)
    if not ids and not console.stdin_is_tty:
        ids = ids_from_text(console.stdin.read())
    if not ids:
        raise UsageError("watch: give request ids, or pipe them in: asyncinfer submit FILE --json | asyncinfer watch")
    ids = list(dict.fromkeys(ids))
    screen = None if args.json else _Screen(console, ids)
    records, timed_out = poll(
        adapters.status(settings),
        ids,
        args.interval,
        args.timeout,
        screen.update if screen else lambda _r: None,
        adapters.clock,
        adapters.sleep,
    )
    states = {rid: state_of(records.get(rid)) for rid in ids}
    if args.json:
        console.print_json(
            {
                "timed_out": timed_out,
                "requests": [{"request_id": rid, "state": states[rid], "record": records.get(rid)} for rid in ids],
            }
        )
    elif timed_out:
        pending = [rid for rid in ids if states[rid] not in TERMINAL]
        console.err.write(f"asyncinfer: timed out after {args.timeout:g} s; not finished: {' '.join(pending)}\n")
    if timed_out:
        return ExitCode.TIMEOUT
    return ExitCode.OK if all(s == RequestState.SUCCEEDED.value for s in states.values()) else ExitCode.FAILED
