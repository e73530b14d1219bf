"""Helpers for running the local functions host as a subprocess against the fixture app in a temp folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.functions_host import FunctionsHostProcess
from tests.support.wait import wait_for

FIXTURE_APP = Path(__file__).parent / "fixture_app" / "function_app.py"


class FixtureApp:
    """A copy of the fixture app with its own host.json, local.settings.json, record folder and data dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.script_root = root / "app"
        self.records = root / "records"
        self.data_dir = root / "data"
        self.script_root.mkdir(parents=True)
        self.records.mkdir()
        shutil.copy(FIXTURE_APP, self.script_root / "function_app.py")
        self.processes: list[FunctionsHostProcess] = []
        self.write_host_json({})

    def write_host_json(self, extensions: dict[str, Any]) -> None:
        document = {"version": "2.0", "extensions": extensions}
        (self.script_root / "host.json").write_text(json.dumps(document), encoding="utf-8")

    def write_settings(self, values: dict[str, str]) -> None:
        document = {"IsEncrypted": False, "Values": {"RECORD_DIR": str(self.records), **values}}
        (self.script_root / "local.settings.json").write_text(json.dumps(document), encoding="utf-8")

    def start(self, env: dict[str, str] | None = None, extra_args: list[str] | None = None) -> FunctionsHostProcess:
        proc = FunctionsHostProcess(
            self.script_root,
            self.root / f"host{len(self.processes)}.log",
            env=env,
            extra_args=["--data-dir", str(self.data_dir), *(extra_args or [])],
            cwd=self.root,
        )
        self.processes.append(proc)
        return proc.start(timeout=60)

    def recorded(self, function: str) -> list[dict[str, Any]]:
        path = self.records / f"{function}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def wait_for(
        self, function: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        def met() -> list[dict[str, Any]] | None:
            entries = self.recorded(function)
            return entries if predicate(entries) else None

        def detail() -> str:
            logs = "\n".join(p.log_text()[-4000:] for p in self.processes)
            return f"recorded {self.recorded(function)}\n{logs}"

        return wait_for(met, timeout, f"the calls of {function} to meet the condition", detail=detail)

    def stop_all(self) -> None:
        for proc in self.processes:
            proc.stop()


@pytest.fixture
def fixture_app(tmp_path: Path) -> Iterator[FixtureApp]:
    app = FixtureApp(tmp_path)
    try:
        yield app
    finally:
        app.stop_all()
