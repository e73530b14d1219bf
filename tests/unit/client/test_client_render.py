"""Rendering: the progress bar only on a terminal, plain lines otherwise, readable failure lines."""

from __future__ import annotations

import io
from pathlib import Path

from client_fakes import FakeClock, World

from client.app import run
from client.console import Console
from client.render import TextReporter, human_bytes, job_line, table
from client.submit import FileJob, FileJobState, SubmitRun
from shared.contracts import ErrorInfo, RowError


def test_progress_bar_is_drawn_on_a_terminal_and_kept_out_of_stdout(tmp_path: Path) -> None:
    world = World()
    (tmp_path / "a.csv").write_text("id,x\n1,2\n")
    console = Console(world.out, world.err, world.stdin, err_is_tty=True)
    assert run(["submit", str(tmp_path / "a.csv")], console, world.adapters(), env={}) == 0
    bar = world.err.getvalue()
    assert "\r\x1b[2K[" in bar and "files 0/1" in bar and "9 B/9 B up" in bar
    assert "\x1b" not in world.out.getvalue()
    assert bar.endswith("\r\x1b[2K")  # the bar is cleared before the summary


def test_plain_output_has_no_control_characters(tmp_path: Path) -> None:
    world = World()
    (tmp_path / "a.csv").write_text("id,x\n1,2\n")
    assert run(["submit", str(tmp_path / "a.csv")], world.console(), world.adapters(), env={}) == 0
    assert world.err.getvalue() == ""
    lines = world.out.getvalue().splitlines()
    assert lines[0].startswith("session ") and lines[1].startswith("uploaded  ")
    assert all("\x1b" not in line and "\r" not in line for line in lines)


def test_bar_counts_files_bytes_and_rows() -> None:
    clock = FakeClock()
    run_ = SubmitRun("s", "churn", wait=True)
    done = FileJob(
        Path("a.csv"), "a.csv", size=2048, state=FileJobState.SUCCEEDED, uploaded_bytes=2048, rows_scored=1500
    )
    pending = FileJob(Path("b.csv"), "b.csv", size=2048, state=FileJobState.SUBMITTED, uploaded_bytes=2048)
    run_.jobs = [done, pending]
    reporter = TextReporter(io.StringIO(), io.StringIO(), run_, clock)
    reporter.waiting = True
    clock.now += 75
    text = reporter.bar_text()
    assert text.startswith("[" + "#" * 12 + "-" * 12 + "]")
    assert "files 1/2" in text and "4.0 KB/4.0 KB up" in text and "rows 1,500" in text and "01:15" in text


def test_failure_line_shows_code_message_and_first_row_errors() -> None:
    job = FileJob(
        Path("in/a.csv"),
        "a.csv",
        state=FileJobState.FAILED,
        error=ErrorInfo("missing_columns", "missing columns: tenure"),
        rows_failed=9,
        row_errors=tuple(RowError(i, f"bad {i}") for i in range(1, 8)),
    )
    lines = job_line(job)
    assert lines[0] == "FAILED    in/a.csv: missing columns: tenure [missing_columns]"
    assert lines[1:6] == [f"          row {i}: bad {i}" for i in range(1, 6)]
    assert lines[6] == "          ... and 4 more bad rows"


def test_table_and_sizes() -> None:
    assert table(["a", "bb"], [["1", "2"], ["333", ""]]) == ["a    bb", "---  --", "1    2", "333"]
    assert (human_bytes(10), human_bytes(1536), human_bytes(3 * 1024**3)) == ("10 B", "1.5 KB", "3.0 GB")
