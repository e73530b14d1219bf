"""The stack runner with cheap stand-in services (small Python TCP listeners) on free ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack import procs
from devstack.ports import LOOPBACK, free_port, port_open
from devstack.runner import Runner, ServiceSpec, StackError, State
from tests.support.wait import wait_until

# Listens on the port given as argv[1], starts a child in the same process group (like gunicorn's
# workers), prints "ready", then waits to be stopped.
LISTENER = """
import socket, subprocess, sys, time
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(f"child-pid {child.pid}", flush=True)
print("ready", flush=True)
time.sleep(600)
"""


def listener(name: str, port: int, **kwargs: object) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        argv=(sys.executable, "-c", LISTENER, str(port)),
        ports=(port,),
        ready_line=r"^ready$",
        start_timeout=20,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    specs = [listener("first", free_port()), listener("second", free_port())]
    run = Runner(tmp_path / "stack", specs, report=lambda line: None)
    try:
        yield run
    finally:
        run.down()


def child_pid(run: Runner, name: str) -> int:
    for line in run.log_path(name).read_text().splitlines():
        found = re.fullmatch(r"child-pid (\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError(f"no child line in {name}'s log")


def test_up_starts_in_order_and_is_idempotent(runner: Runner) -> None:
    statuses = runner.up()
    assert [(s.name, s.state, s.healthy) for s in statuses] == [
        ("first", State.RUNNING, True),
        ("second", State.RUNNING, True),
    ]
    pids = [s.pid for s in statuses]
    assert all(port_open(spec.ports[0]) for spec in runner.specs)
    assert runner.log_path("first").read_text().splitlines().count("ready") == 1

    again = runner.up()
    assert [s.pid for s in again] == pids, "a second `up` must not start anything new"


def test_down_stops_services_and_their_children(runner: Runner) -> None:
    statuses = runner.up()
    children = [child_pid(runner, s.name) for s in statuses]
    assert all(procs.is_alive(pid) for pid in children)

    lines = runner.down()

    assert all("stopped" in line for line in lines[:2]), lines
    for st in statuses:
        assert st.pid is not None and not procs.is_alive(st.pid)
        assert not runner.pid_path(st.name).exists()
    # the group's leftovers get SIGKILL, which the kernel completes asynchronously: allow it a moment
    wait_until(lambda: not any(procs.is_alive(pid) for pid in children), 5, "the leftovers to die", interval=0.05)
    assert [s.state for s in runner.statuses()] == [State.STOPPED, State.STOPPED]


def test_busy_port_names_service_and_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        spec = listener("blobby", port, port_options={port: "--blob-port"})
        run = Runner(tmp_path, [spec], report=lambda line: None)
        with pytest.raises(StackError) as err:
            run.up()
    message = str(err.value)
    assert f"port {port} for blobby is already in use" in message
    assert "--blob-port" in message
    assert not run.pid_path("blobby").exists()


@contextmanager
def unrelated_process(*argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """A process this runner did not start (``python *argv``), killed with its children when the test is done."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_stale_pid_file_is_reported_removed_and_never_killed(tmp_path: Path) -> None:
    spec = listener("svc", free_port())
    # A process this runner did not start, sitting on the pid recorded in the pid file.
    with unrelated_process("-c", "import time; time.sleep(600)") as bystander:
        run = Runner(tmp_path, [spec], report=lambda line: None)
        stale = procs.PidRecord(
            name="svc", pid=bystander.pid, argv=spec.argv, ports=spec.ports, log="x", started_at=time.time()
        )
        stale.dump(run.pid_path("svc"))

        status = run.status(spec)
        assert status.state is State.STALE
        assert status.detail == f"pid {bystander.pid} now runs another command; it was left alone"

        [line] = run.down()
        assert line == f"svc: removed stale pid file (pid {bystander.pid} now runs another command; it was left alone)"
        assert bystander.poll() is None, "down must not signal a process it did not start"
        assert not run.pid_path("svc").exists()

        stale.dump(run.pid_path("svc"))
        reported: list[str] = []
        run = Runner(tmp_path, [spec], report=reported.append)
        [started] = run.up()
        assert started.state is State.RUNNING and started.pid != bystander.pid
        assert any("removing stale pid file" in line for line in reported)
        run.down()
        assert bystander.poll() is None


def test_down_leaves_unrelated_listener_alone(tmp_path: Path) -> None:
    with unrelated_process("-c", LISTENER, str(free_port())) as other:
        run = Runner(tmp_path, [listener("svc", free_port())], report=lambda line: None)
        run.up()
        run.down()
        assert other.poll() is None


def test_service_exiting_during_start_shows_its_log(tmp_path: Path) -> None:
    crash = (
        "import sys; print('OSError: cannot open the model directory', flush=True); "
        "print('shutting down', flush=True); sys.exit(3)"
    )
    spec = ServiceSpec(name="crashy", argv=(sys.executable, "-c", crash), ports=(free_port(),), start_timeout=20)
    run = Runner(tmp_path, [spec], report=lambda line: None)
    with pytest.raises(StackError) as err:
        run.up()
    message = str(err.value)
    assert "crashy exited with code 3 while starting" in message
    assert "    shutting down" in message
    assert message.endswith("first error: OSError: cannot open the model directory")
    assert not run.pid_path("crashy").exists()


def test_service_never_ready_is_stopped_after_timeout(tmp_path: Path) -> None:
    quiet = "import os, time; print('warming up', os.getpid(), flush=True); time.sleep(600)"
    spec = ServiceSpec(name="slow", argv=(sys.executable, "-c", quiet), ports=(free_port(),), start_timeout=2)
    run = Runner(tmp_path, [spec], report=lambda line: None)
    with pytest.raises(StackError, match=r"slow was not ready after 2s") as err:
        run.up()
    found = re.search(r"warming up (\d+)", str(err.value))
    assert found, str(err.value)
    assert not procs.is_alive(int(found.group(1)))
    assert not run.pid_path("slow").exists()


def test_service_that_died_shows_stale_and_up_restarts_it(runner: Runner) -> None:
    first, second = runner.up()
    assert first.pid is not None
    os.killpg(first.pid, signal.SIGKILL)
    wait_until(lambda: not procs.is_alive(first.pid), 10, "the killed service to exit", interval=0.05)

    stale = runner.status(runner.specs[0])
    assert stale.state is State.STALE
    assert stale.detail.startswith(f"pid {first.pid} has exited")

    restarted = runner.up()
    assert restarted[0].state is State.RUNNING and restarted[0].pid != first.pid
    assert restarted[1].pid == second.pid
