"""Start-up failures of the real host process: they name the function and the setting, and exit with status 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devstack.functions_host.process import FunctionsHostProcess

REPO = Path(__file__).resolve().parents[3]


def run_host(script_root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack.functions_host", "--script-root", str(script_root), "--port", "0",
         "--data-dir", str(script_root / "data")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def write_app(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    header = "import azure.functions as func\n\napp = func.FunctionApp()\n\n"
    (root / "function_app.py").write_text(header + textwrap.dedent(body), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            @app.schedule(arg_name="t", schedule="%MISSING_SCHEDULE%")
            def nightly(t: func.TimerRequest) -> None: ...
            """,
            ["nightly", "MISSING_SCHEDULE"],
        ),
        (
            """
            @app.queue_trigger(arg_name="m", queue_name="q", connection="AzureWebJobsStorage")
            def from_queue(m: func.QueueMessage) -> None: ...
            """,
            ["from_queue", "queueTrigger", "not supported"],
        ),
        (
            """
            @app.service_bus_queue_trigger(arg_name="m", queue_name="q", connection="NoSuchBus")
            def on_bus(m: func.ServiceBusMessage) -> None: ...
            """,
            ["on_bus", "NoSuchBus"],
        ),
        (
            """
            @app.schedule(arg_name="t", schedule="0 0 * * *")
            def five_fields(t: func.TimerRequest) -> None: ...
            """,
            ["0 0 * * *", "6"],
        ),
    ],
)
def test_bad_app_fails_fast_naming_what_is_wrong(tmp_path: Path, body: str, expected: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MISSING_SCHEDULE", "NoSuchBus")}
    result = run_host(write_app(tmp_path / "app", body), env)
    assert result.returncode == 2, result.stderr
    assert "functions host ready" not in result.stdout
    for text in expected:
        assert text in result.stderr


def test_settings_come_from_the_example_file_when_no_local_file(tmp_path: Path) -> None:
    root = write_app(
        tmp_path / "app",
        """
        @app.route(route="ping", auth_level=func.AuthLevel.ANONYMOUS)
        def ping(req: func.HttpRequest) -> str:
            return "pong"

        @app.schedule(arg_name="t", schedule="%EXAMPLE_SCHEDULE%")
        def from_example(t: func.TimerRequest) -> None: ...
        """,
    )
    (root / "local.settings.json.example").write_text(
        '{"IsEncrypted": false, "Values": {"EXAMPLE_SCHEDULE": "0 0 0 1 1 *"}}', encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k != "EXAMPLE_SCHEDULE"}
    with FunctionsHostProcess(root, tmp_path / "host.log", env=env, extra_args=["--data-dir", str(tmp_path)]) as host:
        assert "2 functions: ping, from_example" in host.ready_line
