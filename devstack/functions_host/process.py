"""Runs the local functions host as a subprocess and waits for its readiness line (stack runner, tests)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

READY = re.compile(r"functions host ready on (http://\S+) ")


class FunctionsHostProcess:
    """``python -m devstack.functions_host`` with stdout/stderr written to ``log_path``."""

    def __init__(
        self,
        script_root: Path,
        log_path: Path,
        *,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        extra_args: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.script_root = script_root
        self.log_path = log_path
        self.port = port
        self.env = dict(os.environ if env is None else env)
        self.extra_args = list(extra_args or [])
        self.cwd = cwd
        self.url = ""
        self.ready_line = ""
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 60.0) -> FunctionsHostProcess:
        repo = Path(__file__).resolve().parents[2]
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        command = [sys.executable, "-m", "devstack.functions_host", "--script-root", str(self.script_root),
                   "--port", str(self.port), *self.extra_args]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a", encoding="utf-8")
        self._proc = subprocess.Popen(
            command, cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        threading.Thread(target=self._pump, name="functions-host-log", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"functions host did not become ready; see {self.log_path}")
        return self

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None and self._log is not None
        for line in self._proc.stdout:
            self._log.write(line)
            self._log.flush()
            match = READY.search(line)
            if match and not self._ready.is_set():
                self.url = match.group(1)
                self.ready_line = line.strip()
                self._ready.set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs; returns the exit status."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._log is not None:
            time.sleep(0.1)  # let the pump write the last lines
            self._log.close()
            self._log = None
        return self._proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    def __enter__(self) -> FunctionsHostProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
