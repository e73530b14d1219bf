"""`python -m devstack` against the session's running stack: status, a second `up`, and the demo."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devstack.stack import REPO
from tests.fixtures.stack import StackEndpoints

pytestmark = pytest.mark.slow


def devstack(stack: StackEndpoints, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args, "--base-dir", str(stack.base_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def status_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("azurite", "servicebus", "scoring", "functions"):
            rows[parts[0]] = parts[1:]
    return rows


def test_status_shows_every_service_running_and_healthy(stack: StackEndpoints) -> None:
    done = devstack(stack, "status")
    assert done.returncode == 0, done.stderr
    rows = status_rows(done.stdout)
    assert set(rows) == {"azurite", "servicebus", "scoring", "functions"}
    for name, cells in rows.items():
        assert cells[0] == "running" and cells[3] == "healthy", (name, done.stdout)
    assert f":{stack.settings.scoring_port}/score" in done.stdout


def test_second_up_leaves_the_running_stack_alone(stack: StackEndpoints) -> None:
    before = status_rows(devstack(stack, "status").stdout)
    done = devstack(stack, "up")
    assert done.returncode == 0, done.stderr
    for name in ("azurite", "servicebus", "scoring", "functions"):
        assert re.search(rf"^{name}: already running \(pid {before[name][1]}\)", done.stdout, re.MULTILINE), done.stdout


def test_demo_scores_the_good_samples_and_reports_the_bad_ones(stack: StackEndpoints) -> None:
    done = devstack(stack, "demo", "--timeout", "240", timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = {line.split()[0]: line for line in done.stdout.splitlines() if re.match(r"^(customers|bad)-", line)}
    assert len(summary) == 7, done.stdout
    for name, line in summary.items():
        if name.startswith("bad-"):
            assert re.search(r"error \(\w+\)", line), line
        else:
            assert " scored" in line, line
    assert "error (missing_columns)" in summary["bad-missing-column.csv"]
    assert "3 bad rows left out" in summary["customers-some-bad-rows.csv"]
    assert all(line.split()[1] == "default" for n, line in summary.items() if n.startswith("customers-")), summary
    assert (
        "matches the model" in summary["customers-small.csv"]
        and "matches the model" in summary["customers-medium.jsonl"]
    )
    assert "does not serve the route(s) multiclass, regression" in done.stdout, "this stack has no extra routes"
    rows = {name: line.split()[2] for name, line in summary.items() if name.startswith("customers-")}
    assert rows == {
        "customers-small.csv": "20",
        "customers-medium.jsonl": "2000",
        "customers-large.csv": "40000",
        "customers-compressed.jsonl.gz": "5000",
        "customers-some-bad-rows.csv": "27",
    }
