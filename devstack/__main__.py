"""Command line for the local stack: ``python -m devstack up | down | status | logs [NAME] | demo``.

``up --model NAME=MODEL_DIR`` (repeatable) adds model route NAME, served by its own scoring server; a blob
uploaded with metadata ``model=NAME`` is scored by that model.

Every command accepts ``--base-dir`` (default ``.devstack``, or ``DEVSTACK_BASE_DIR``) and one port
flag per service (or its ``DEVSTACK_*_PORT`` variable); ``up`` remembers the ports in the base dir, so
later commands on the same base dir need no flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from azure.core.exceptions import AzureError

from devstack import procs
from devstack.routes import ModelOption, RouteOptionError, parse_model_option
from devstack.runner import ServiceStatus, StackError
from devstack.stack import PORT_SETTINGS, LocalStack, StackSettings

logger = logging.getLogger(__name__)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--base-dir", type=Path, help="where data, logs and pid files live (default: .devstack)")
    for name, (variable, flag) in PORT_SETTINGS.items():
        common.add_argument(flag, dest=name, type=int, metavar="PORT", help=f"(or {variable})")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="start the services (idempotent) and wait until each is healthy")
    up.add_argument("names", nargs="*", metavar="NAME", help="only these services (default: all, in order)")
    up.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="NAME=MODEL_DIR",
        help="add model route NAME served from the MLflow model in MODEL_DIR (repeatable)",
    )
    sub.add_parser("down", parents=[common], help="stop the services this stack started")
    sub.add_parser("status", parents=[common], help="show each service: running/stopped/stale, pid, ports, health")
    logs = sub.add_parser("logs", parents=[common], help="print the last lines of the logs (and follow with -f)")
    logs.add_argument("name", nargs="?", help="one service (default: all)")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    demo = sub.add_parser("demo", parents=[common], help="start the stack, score sample files, print a summary")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for all results")
    return parser


def settings_from(args: argparse.Namespace) -> StackSettings:
    ports = {name: getattr(args, name, None) for name in PORT_SETTINGS}
    models: list[ModelOption] | None = None
    if args.command == "up":
        try:
            models = [parse_model_option(text) for text in args.models]
        except RouteOptionError as exc:
            raise StackError(str(exc)) from exc
    return StackSettings.load(getattr(args, "base_dir", None), ports, models)


def print_statuses(statuses: Sequence[ServiceStatus]) -> None:
    rows = [("SERVICE", "STATE", "PID", "PORTS", "HEALTH", "LISTENS / NOTE")]
    for st in statuses:
        health = "-" if st.state != "running" else ("healthy" if st.healthy else "unhealthy")
        note = st.detail if st.detail else (st.listens if st.state == "running" else "")
        ports = ",".join(str(p) for p in st.ports)
        rows.append((st.name, st.state.value, str(st.pid) if st.pid else "-", ports, health, note))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5]
        print(line.rstrip())


def cmd_up(stack: LocalStack, names: Sequence[str]) -> int:
    for name in names:
        stack.runner.spec(name)  # unknown names fail before anything starts
    statuses = stack.up(names or None)
    print()
    print_statuses(statuses)
    s = stack.settings
    print()
    print(f"storage connection string:     {s.storage_connection_string}")
    print(f"service bus connection string: {s.servicebus_connection_string}")
    print(f"service bus CA certificate:    {s.servicebus_ca_file}  (administration client: connection_verify=)")
    print(f"client settings:               {s.client_settings_file}  (python -m client ... --settings FILE)")
    print(f"logs: {s.log_dir}  (python -m devstack logs [NAME])")
    print(f"telemetry (spans and metrics as JSON lines): {s.telemetry_dir}")
    if s.status_url():
        print(f"status page: {s.status_url()}")
    return 0


def cmd_logs(stack: LocalStack, name: str | None, lines: int, follow: bool) -> int:
    names = [name] if name else stack.names
    paths = {n: stack.log_path(n) for n in names}
    for n, path in paths.items():
        if len(paths) > 1:
            print(f"==> {n}: {path} <==")
        for line in procs.tail(path, lines):
            print(line if len(paths) == 1 else f"{n:>10} | {line}")
    if not follow:
        return 0
    offsets = {n: path.stat().st_size if path.exists() else 0 for n, path in paths.items()}
    while True:
        for n, path in paths.items():
            if not path.exists():
                continue
            with path.open("r", errors="replace") as fh:
                fh.seek(offsets[n])
                chunk = fh.read()
                offsets[n] = fh.tell()
            for line in chunk.splitlines():
                print(line if len(paths) == 1 else f"{n:>10} | {line}", flush=True)
        time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        stack = LocalStack(settings_from(args), report=lambda line: print(line, flush=True))
        if args.command == "up":
            return cmd_up(stack, args.names)
        if args.command == "down":
            for line in stack.down():
                print(line)
            return 0
        if args.command == "status":
            print_statuses(stack.statuses())
            return 0
        if args.command == "logs":
            return cmd_logs(stack, args.name, args.lines, args.follow)
        if args.command == "demo":
            from devstack import demo

            return demo.run(stack, timeout=args.timeout)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AzureError as exc:
        # e.g. the demo cannot reach storage: one line, the details are in the service logs
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`); stop quietly instead of a traceback at the next flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
