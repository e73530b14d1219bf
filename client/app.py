"""Wiring: parse arguments, resolve settings, build the adapters, run one command, map errors to exit codes.

``run`` takes its streams (:mod:`client.console`) and adapter factories (:mod:`client.adapters`) as arguments
so unit tests drive it with fakes; the commands import those two modules, never this one.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping

from client.adapters import Adapters
from client.cli import parse_args, setting_overrides
from client.console import Console
from client.errors import CliError, ExitCode
from client.settings import ClientSettings, load_settings
from shared.config import SettingsError
from shared.contracts import DEFAULT_MODEL

logger = logging.getLogger(__name__)


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
        model = getattr(args, "model", DEFAULT_MODEL)
        settings = load_settings(setting_overrides(args), os.environ if env is None else env, args.settings, model)
        return int(_dispatch(args, settings, adapters, console))
    except (CliError, SettingsError) as exc:
        if debug:
            logger.exception("failed")
        console.err.write(f"asyncinfer: error: {exc}\n")
        return int(exc.exit_code if isinstance(exc, CliError) else ExitCode.USAGE)
    except KeyboardInterrupt:
        console.err.write("asyncinfer: interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # the CLI's promise: one readable line unless --debug
        if debug:
            raise
        console.err.write(f"asyncinfer: error: {type(exc).__name__}: {exc} (run with --debug for details)\n")
        return int(ExitCode.FAILED)
