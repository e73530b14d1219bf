"""Wiring: parse arguments, resolve settings, build the adapters, run one command, map errors to exit codes.

``run`` takes its streams and adapter factories as arguments so unit tests drive it with fakes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TextIO

from client.cli import parse_args, setting_overrides
from client.errors import CliError, ExitCode
from client.ports import InputStore, OutputFetcher, ResultInbox, ScoringEndpoint, StatusSource
from client.settings import ClientSettings, load_settings

logger = logging.getLogger(__name__)


@dataclass
class Console:
    out: TextIO
    err: TextIO
    stdin: TextIO
    err_is_tty: bool = False
    out_is_tty: bool = False
    stdin_is_tty: bool = False

    @classmethod
    def system(cls) -> Console:
        return cls(sys.stdout, sys.stderr, sys.stdin, sys.stderr.isatty(), sys.stdout.isatty(), sys.stdin.isatty())

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def print_json(self, document: Any) -> None:
        self.print(json.dumps(document, indent=2, ensure_ascii=False, default=str))


@dataclass
class Adapters:
    """Factories for the ports; the real ones build SDK clients from the settings."""

    input_store: Callable[[ClientSettings], InputStore]
    output_fetcher: Callable[[ClientSettings], OutputFetcher]
    inbox: Callable[[ClientSettings, str], AbstractContextManager[ResultInbox]]
    scoring: Callable[[ClientSettings, float], ScoringEndpoint]
    status: Callable[[ClientSettings], StatusSource]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def real_adapters() -> Adapters:
    # The SDKs are imported only by the commands that need them, so --help and score stay quick.
    def input_store(s: ClientSettings) -> InputStore:
        from client.azure_io import BlobInputStore

        return BlobInputStore(s.storage, s.input_container)

    def output_fetcher(s: ClientSettings) -> OutputFetcher:
        from client.azure_io import BlobOutputFetcher

        return BlobOutputFetcher(s.storage)

    def inbox(s: ClientSettings, session_id: str) -> AbstractContextManager[ResultInbox]:
        from client.azure_io import open_session_inbox

        return open_session_inbox(s.servicebus, s.result_topic, s.client_subscription, session_id)

    def scoring(s: ClientSettings, timeout: float) -> ScoringEndpoint:
        from client.http_io import HttpScoringEndpoint

        return HttpScoringEndpoint(s.scoring_uri, s.scoring_key, s.scoring_deployment, timeout)

    def status(s: ClientSettings) -> StatusSource:
        from client.http_io import HttpStatusSource

        return HttpStatusSource(s.functions_url, s.functions_key)

    return Adapters(input_store, output_fetcher, inbox, scoring, status)


def _dispatch(args: argparse.Namespace, settings: ClientSettings, adapters: Adapters, console: Console) -> ExitCode:
    if args.command == "submit":
        from client.submit_cmd import run_submit

        return run_submit(args, settings, adapters, console)
    if args.command == "score":
        from client.score_cmd import run_score

        return run_score(args, settings, adapters, console)
    from client.status_cmd import run_status, run_watch

    if args.command == "status":
        return run_status(args, settings, adapters, console)
    return run_watch(args, settings, adapters, console)


def run(
    argv: list[str],
    console: Console,
    adapters: Adapters,
    env: Mapping[str, str] | None = None,
) -> int:
    debug = "--debug" in argv
    try:
        args = parse_args(argv)
        if args.debug:
            logging.basicConfig(level=logging.DEBUG, stream=console.err)
        settings = load_settings(setting_overrides(args), os.environ if env is None else env, args.settings)
        return int(_dispatch(args, settings, adapters, console))
    except CliError as exc:
        if debug:
            logger.exception("failed")
        console.err.write(f"asyncinfer: error: {exc}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        console.err.write("asyncinfer: interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # the CLI's promise: one readable line unless --debug
        if debug:
            raise
        console.err.write(f"asyncinfer: error: {type(exc).__name__}: {exc} (run with --debug for details)\n")
        return int(ExitCode.FAILED)
