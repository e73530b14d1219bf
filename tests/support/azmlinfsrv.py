"""The real AML inference server (``azmlinfsrv``) serving ``scoring/score.py`` as a process on a free port.

Shared by the scoring fixtures (``tests/fixtures/scoring.py``) and the benchmarks that start extra servers:
:func:`start_scoring_server` returns once the worker has loaded the model and the liveness route answers,
or raises :class:`ServerStartError` with the end of the server's log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from devstack.ports import LOOPBACK, free_port

REPO = Path(__file__).resolve().parents[2]
AZMLINFSRV = Path(sys.executable).with_name("azmlinfsrv")
START_TIMEOUT = 90.0


class ServerStartError(RuntimeError):
    """The server exited or was not ready in time; the message ends with its log's last lines."""


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``proc`` and wait up to ``grace`` seconds, then SIGKILL it; nothing to do once it has exited."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class ScoringServer:
    url: str  # base URL; POST {url}/score
    log_path: Path
    model_dir: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def score_url(self) -> str:
        return f"{self.url}/score"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, 15)


def start_scoring_server(
    model_dir: Path, log_path: Path, env: dict[str, str], timeout: float = START_TIMEOUT
) -> ScoringServer:
    """``azmlinfsrv`` serving ``model_dir`` with ``env`` on top of this process's environment."""
    port = free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    full_env.pop("AZUREML_MODEL_DIR", None)
    cmd = [
        str(AZMLINFSRV), "--entry_script", str(REPO / "scoring" / "score.py"),
        "--model_dir", str(model_dir), "--port", str(port),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ScoringServer(f"http://{LOOPBACK}:{port}", log_path, model_dir, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"azmlinfsrv exited with {proc.returncode}:\n{server.log_text()[-3000:]}")
        # The port is bound by gunicorn's master before the worker has run init(): wait for the worker's
        # readiness line, then for the liveness route to answer.
        if "ready for serving" in server.log_text():
            try:
                if requests.get(server.url + "/", timeout=5).status_code == 200:
                    return server
            except requests.RequestException:
                pass
        time.sleep(0.25)
    server.stop()
    raise ServerStartError(f"azmlinfsrv was not ready after {timeout} s:\n{server.log_text()[-3000:]}")
