"""A small process supervisor: start services in order, wait until each is healthy, stop what it started.

Each service runs as its own process group (its own session) with output appended to
``<base>/logs/<name>.log`` and a pid file in ``<base>/run/<name>.json``. Nothing here knows about
Azure; :mod:`devstack.stack` describes the concrete services.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from devstack import procs
from devstack.ports import LOOPBACK, port_open

logger = logging.getLogger(__name__)

LOG_LINES_ON_FAILURE = 15


class StackError(RuntimeError):
    """A problem the user can act on; the CLI prints its message without a traceback."""


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service and how to tell that it is ready."""

    name: str
    argv: tuple[str, ...]
    ports: tuple[int, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready_line: str | None = None  # regex the service prints once it is ready (searched in its new log output)
    http_probe: str | None = None  # URL that must answer with a status below 500
    start_timeout: float = 60.0
    port_options: Mapping[int, str] = field(default_factory=dict)  # port -> flag that changes it (for messages)
    before_start: Callable[[], None] | None = None  # checks and preparation; raise StackError to refuse
    after_start: Callable[[], None] | None = None  # e.g. create containers once the service answers
    listens: str = ""  # shown by `up`/`status`


class State(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    STALE = "stale"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: State
    pid: int | None
    ports: tuple[int, ...]
    healthy: bool
    listens: str = ""
    detail: str = ""


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when a server socket could not bind ``host:port`` right now (something else holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


# Options whose value is a secret: logs show the command line with the value masked.
SECRET_OPTIONS = frozenset({"--key"})


def printable_argv(argv: Sequence[str]) -> list[str]:
    return ["***" if i and argv[i - 1] in SECRET_OPTIONS else arg for i, arg in enumerate(argv)]


class Runner:
    """Starts, checks and stops a fixed, ordered list of services under one base directory."""

    def __init__(self, base_dir: Path, specs: Sequence[ServiceSpec], report: Callable[[str], None] | None = None):
        self.base_dir = base_dir
        self.specs = list(specs)
        self.run_dir = base_dir / "run"
        self.log_dir = base_dir / "logs"
        self._report = report or (lambda line: logger.info("%s", line))
        # Popen objects of the services this runner started, kept so they are reaped, not garbage-collected running.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # ---------------------------------------------------------------- paths and lookups

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def spec(self, name: str) -> ServiceSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise StackError(f"unknown service {name!r}; known: {', '.join(s.name for s in self.specs)}")

    # ---------------------------------------------------------------- status

    def status(self, spec: ServiceSpec) -> ServiceStatus:
        record = procs.PidRecord.load(self.pid_path(spec.name))
        if record is None:
            if self.pid_path(spec.name).exists():
                return ServiceStatus(
                    spec.name, State.STALE, None, spec.ports, False, spec.listens, "unreadable pid file"
                )
            return ServiceStatus(spec.name, State.STOPPED, None, spec.ports, False, spec.listens)
        if not procs.matches(record):
            return ServiceStatus(
                spec.name, State.STALE, record.pid, record.ports, False, spec.listens, procs.why_stale(record)
            )
        healthy = all(port_open(p) for p in record.ports) and (spec.http_probe is None or http_ok(spec.http_probe))
        return ServiceStatus(spec.name, State.RUNNING, record.pid, record.ports, healthy, spec.listens)

    def statuses(self) -> list[ServiceStatus]:
        return [self.status(spec) for spec in self.specs]

    # ---------------------------------------------------------------- up

    def up(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        """Start the services (all, or ``names``) in order; each must be healthy before the next starts."""
        wanted = set(names) if names is not None else None
        for spec in self.specs:
            if wanted is None or spec.name in wanted:
                self.start(spec)
        return self.statuses()

    def start(self, spec: ServiceSpec) -> None:
        current = self.status(spec)
        if current.state is State.RUNNING:
            if not current.healthy:
                self._wait_healthy(spec, None, self.log_path(spec.name), 0)
            self._report(f"{spec.name}: already running (pid {current.pid}) {spec.listens}".rstrip())
            if spec.after_start is not None:
                spec.after_start()
            return
        if current.state is State.STALE:
            self._report(f"{spec.name}: removing stale pid file ({current.detail})")
            self.pid_path(spec.name).unlink(missing_ok=True)
            earlier = self._children.pop(spec.name, None)
            if earlier is not None:
                earlier.poll()
        for port in spec.ports:
            if port_in_use(port):
                option = spec.port_options.get(port)
                hint = f", or give {spec.name} another port with {option}" if option else ""
                raise StackError(
                    f"port {port} for {spec.name} is already in use by another process "
                    f"(stop it{hint}; `python -m devstack status` shows what this stack runs)"
                )
        if spec.before_start is not None:
            spec.before_start()
        self._launch(spec)

    def _launch(self, spec: ServiceSpec) -> None:
        log_path = self.log_path(spec.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with log_path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"\n=== {stamp} starting {spec.name}: {' '.join(printable_argv(spec.argv))}\n".encode())
            log.flush()
            offset = log.tell()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
            try:
                proc = subprocess.Popen(
                    list(spec.argv),
                    cwd=spec.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: `down` can stop its children too
                )
            except OSError as exc:
                raise StackError(f"{spec.name} could not be started ({spec.argv[0]}: {exc.strerror})") from exc
        self._children[spec.name] = proc
        procs.PidRecord(
            name=spec.name, pid=proc.pid, argv=spec.argv, ports=spec.ports, log=str(log_path), started_at=time.time()
        ).dump(self.pid_path(spec.name))
        try:
            self._wait_healthy(spec, proc, log_path, offset)
        except StackError:
            procs.terminate(proc.pid, grace=5)
            proc.poll()  # records the exit status, so Popen does not warn that it is still running
            self._children.pop(spec.name, None)
            self.pid_path(spec.name).unlink(missing_ok=True)
            raise
        if spec.after_start is not None:
            try:
                spec.after_start()
            except StackError:
                self.stop(spec.name)
                raise
        self._report(
            f"{spec.name}: ready in {time.monotonic() - started:.1f}s (pid {proc.pid}) {spec.listens}".rstrip()
        )

    def _wait_healthy(self, spec: ServiceSpec, proc: subprocess.Popen[bytes] | None, log: Path, offset: int) -> None:
        pattern = re.compile(spec.ready_line, re.MULTILINE) if spec.ready_line else None
        deadline = time.monotonic() + spec.start_timeout
        while True:
            if proc is not None and proc.poll() is not None:
                raise StackError(
                    f"{spec.name} exited with code {proc.returncode} while starting; last lines of {log}:\n"
                    + _indent(procs.tail(log, LOG_LINES_ON_FAILURE))
                    + _first_error(log, offset)
                )
            if self._ready(spec, pattern, log, offset):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{spec.name} was not ready after {spec.start_timeout:.0f}s; last lines of {log}:\n"
                    + _indent(procs.tail(log, LOG_LINES_ON_FAILURE))
                )
            time.sleep(0.2)

    @staticmethod
    def _ready(spec: ServiceSpec, pattern: re.Pattern[str] | None, log: Path, offset: int) -> bool:
        if pattern is not None:
            with log.open("rb") as fh:
                fh.seek(offset)
                if not pattern.search(fh.read().decode(errors="replace")):
                    return False
        if not all(port_open(p) for p in spec.ports):
            return False
        return spec.http_probe is None or http_ok(spec.http_probe)

    # ---------------------------------------------------------------- down

    def down(self) -> list[str]:
        """Stop, in reverse order, every service this runner started; returns one line per service."""
        lines = []
        names = [s.name for s in reversed(self.specs)]
        if self.run_dir.is_dir():
            names += sorted(p.stem for p in self.run_dir.glob("*.json") if p.stem not in names)
        for name in names:
            lines.append(self.stop(name))
        return lines

    def stop(self, name: str) -> str:
        path = self.pid_path(name)
        record = procs.PidRecord.load(path)
        if record is None:
            if path.exists():
                path.unlink()
                return f"{name}: removed unreadable pid file"
            return f"{name}: not running"
        if not procs.matches(record):
            path.unlink(missing_ok=True)
            return f"{name}: removed stale pid file ({procs.why_stale(record)})"
        gone = procs.terminate(record.pid)
        child = self._children.pop(name, None)
        if child is not None:
            child.poll()
        if not gone:
            return f"{name}: pid {record.pid} did not stop, even after SIGKILL"
        path.unlink(missing_ok=True)
        return f"{name}: stopped (pid {record.pid})"


# An exception line as Python prints it at the end of a traceback: "ValueError: ..." or "pkg.mod.SomeError: ...".
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception)\b: ")


def _first_error(log: Path, offset: int) -> str:
    """The first exception line written since ``offset`` (often the cause, when the tail shows only the fallout)."""
    try:
        with log.open("rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if _EXCEPTION_LINE.match(line):
            return f"\n  first error: {line.strip()}"
    return ""


def _indent(lines: list[str]) -> str:
    return "\n".join(f"    {line}" for line in lines) if lines else "    (the log is empty)"
