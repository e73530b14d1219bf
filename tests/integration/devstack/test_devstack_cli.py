"""`python -m devstack` as a user runs it: one-line errors (no tracebacks) and status of an empty base dir."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.ports import LOOPBACK, free_port
from devstack.runner import StackError
from devstack.stack import REPO, StackSettings, check_node


def devstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = ["--queue-port", str(free_port()), "--table-port", str(free_port())]
        done = devstack("up", "--base-dir", str(tmp_path), "--blob-port", str(port), *ports)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: port {port} for azurite is already in use"), done.stderr
    assert "--blob-port" in done.stderr


def test_status_of_a_fresh_base_dir_shows_every_service_stopped(tmp_path: Path) -> None:
    done = devstack("status", "--base-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [line.split()[:2] for line in done.stdout.splitlines()[1:]]
    assert rows == [["azurite", "stopped"], ["servicebus", "stopped"], ["scoring", "stopped"], ["functions", "stopped"]]


def test_bad_port_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVSTACK_SCORING_PORT", "five-thousand")
    with pytest.raises(StackError, match="DEVSTACK_SCORING_PORT must be a port number"):
        StackSettings.load(tmp_path)


def test_ports_saved_by_up_are_reused_and_flags_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEVSTACK_BLOB_PORT", "DEVSTACK_SCORING_PORT"):
        monkeypatch.delenv(name, raising=False)
    StackSettings.load(tmp_path, {"blob_port": 20000, "scoring_port": 20001}).save()
    again = StackSettings.load(tmp_path)
    assert (again.blob_port, again.scoring_port, again.servicebus_port) == (20000, 20001, 5673)
    monkeypatch.setenv("DEVSTACK_BLOB_PORT", "20002")
    assert StackSettings.load(tmp_path).blob_port == 20002
    assert StackSettings.load(tmp_path, {"blob_port": 20003}).blob_port == 20003


def test_missing_azurite_tells_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"run `npm ci` or `make setup`"):
        check_node(tmp_path)


def test_missing_node_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match=r"Node.js is not installed"):
        check_node(REPO)
