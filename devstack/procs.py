"""Process bookkeeping for the stack runner: pid files, command-line checks, stopping, log tails.

A pid file records the exact argv the runner started. Before anything is signalled, the live
process's command line is compared with it, so a recycled pid (or a process someone else started)
is never killed: such a pid file is reported as stale and removed instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PidRecord:
    """What the runner wrote when it started one service."""

    name: str
    pid: int
    argv: tuple[str, ...]
    ports: tuple[int, ...]
    log: str
    started_at: float

    def dump(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> PidRecord | None:
        """The record in ``path``, or None when it is missing or unreadable (treated as stale)."""
        try:
            data = json.loads(path.read_text())
            return cls(
                name=str(data["name"]),
                pid=int(data["pid"]),
                argv=tuple(str(a) for a in data["argv"]),
                ports=tuple(int(p) for p in data["ports"]),
                log=str(data["log"]),
                started_at=float(data["started_at"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable pid file %s: %s", path, exc)
            return None


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        with contextlib.suppress(OSError, IndexError):
            # The state letter follows the parenthesised command name; Z is a zombie.
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def command_line(pid: int) -> list[str] | None:
    """The live argv of ``pid`` (None when it is gone or cannot be read)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if sys.platform.startswith("linux"):
        try:
            raw = proc.read_bytes()
        except OSError:
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None
    try:
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout.split() or None


def matches(record: PidRecord) -> bool:
    """True when ``record.pid`` is alive and still runs the command the runner started.

    Interpreted scripts show up as ``interpreter script args...`` (a ``#!/usr/bin/env node`` script
    becomes ``node script args``), so the recorded argv must be a suffix of the live one.
    """
    if not is_alive(record.pid):
        return False
    live = command_line(record.pid)
    if not live:
        return False
    want = list(record.argv)
    if sys.platform.startswith("linux"):
        return len(live) >= len(want) and live[len(live) - len(want) :] == want
    return " ".join(want) in " ".join(live)


def why_stale(record: PidRecord) -> str:
    """One phrase for a pid file that does not match a live process, for status lines."""
    if is_alive(record.pid):
        return f"pid {record.pid} now runs another command; it was left alone"
    return f"pid {record.pid} has exited; its log is {record.log}"


def terminate(pid: int, grace: float = 10.0) -> bool:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``grace`` seconds; True once gone."""
    try:
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return True
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_alive(pid):
                if group:
                    _kill_group_leftovers(pid)
                return True
            time.sleep(0.1)
        logger.info("pid %s ignored %s", pid, sig.name)
    return not is_alive(pid)


def _kill_group_leftovers(pgid: int) -> None:
    # Workers (gunicorn's, for one) may outlive their leader for a moment; they share its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def tail(path: Path, lines: int = 20) -> list[str]:
    try:
        with path.open("r", errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
    except FileNotFoundError:
        return []
