"""Human output: a progress bar on a terminal, plain lines otherwise; plus the submit summary and JSON document.

Event lines go to stdout; the progress bar is drawn on stderr only when stderr is a terminal, and is
cleared before each event line so the two never interleave.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from client.submit import FileJob, FileJobState, SubmitRun

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1
ROW_ERRORS_SHOWN = 5


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def job_line(job: FileJob) -> list[str]:
    """The line(s) that report one file's latest state."""
    name = str(job.path)
    if job.state == FileJobState.SUBMITTED:
        return [f"uploaded  {name} -> {job.blob_name} ({human_bytes(job.size)}), request {job.request_id}"]
    if job.state == FileJobState.SUCCEEDED:
        failed = f", {job.rows_failed} rows skipped" if job.rows_failed else ""
        lines = [f"done      {name}: {job.rows_scored} rows scored{failed} -> {job.output_path}"]
    else:
        if job.state == FileJobState.NOT_UPLOADED:
            return [f"skipped   {name}: not uploaded"]
        label = "REJECTED" if job.state == FileJobState.REJECTED else "FAILED  "
        code, message = (job.error.code, job.error.message) if job.error else ("unknown", "no reason given")
        lines = [f"{label}  {name}: {message} [{code}]"]
    shown = job.row_errors[:ROW_ERRORS_SHOWN]
    lines.extend(f"          row {err.row}: {err.message}" for err in shown)
    more = max(job.rows_failed, len(job.row_errors)) - len(shown)
    if shown and more > 0:
        lines.append(f"          ... and {more} more bad rows")
    return lines


class TextReporter:
    """Reports a submit run as lines, with a redrawn progress bar when ``bar`` is a terminal."""

    def __init__(
        self, out: TextIO, bar: TextIO | None, run: SubmitRun, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._out, self._bar, self._run, self._clock = out, bar, run, clock
        self._started = clock()
        self._drawn = 0.0
        self._bar_visible = False
        self.waiting = False

    def _say(self, lines: list[str]) -> None:
        self._clear_bar()
        for line in lines:
            self._out.write(line + "\n")
        self._out.flush()
        self.redraw(force=True)

    def note(self, text: str) -> None:
        self._say([f"note: {text}"])

    def upload_progress(self, job: FileJob) -> None:
        self.redraw()

    def file_event(self, job: FileJob) -> None:
        self._say(job_line(job))

    def start_waiting(self, timeout: float) -> None:
        self.waiting = True
        pending = sum(1 for j in self._run.jobs if j.state == FileJobState.SUBMITTED)
        if pending:
            self._say([f"waiting   up to {timeout:g} s for {pending} result(s) on session {self._run.session_id}"])

    def bar_text(self) -> str:
        jobs = self._run.jobs
        total_bytes = sum(j.size for j in jobs) or 1
        sent = sum(j.uploaded_bytes for j in jobs)
        unfinished = (
            (FileJobState.NOT_UPLOADED, FileJobState.SUBMITTED) if self.waiting else (FileJobState.NOT_UPLOADED,)
        )
        done = sum(1 for j in jobs if j.state not in unfinished)
        rows = sum(j.rows_scored for j in jobs)
        fraction = done / len(jobs) if self.waiting and jobs else sent / total_bytes
        filled = round(BAR_WIDTH * min(fraction, 1.0))
        elapsed = int(self._clock() - self._started)
        return (
            f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] files {done}/{len(jobs)} | "
            f"{human_bytes(sent)}/{human_bytes(total_bytes)} up | rows {rows:,} | "
            f"{elapsed // 60:02d}:{elapsed % 60:02d}"
        )

    def redraw(self, force: bool = False) -> None:
        if self._bar is None:
            return
        now = self._clock()
        if not force and now - self._drawn < REDRAW_SECONDS:
            return
        self._drawn = now
        self._bar.write("\r\x1b[2K" + self.bar_text())
        self._bar.flush()
        self._bar_visible = True

    def _clear_bar(self) -> None:
        if self._bar is not None and self._bar_visible:
            self._bar.write("\r\x1b[2K")
            self._bar.flush()
            self._bar_visible = False

    def finish(self, timeout: float | None) -> None:
        self._clear_bar()
        self._bar = None
        self._say(summary_lines(self._run, timeout))


class QuietReporter:
    """For ``--json``: nothing is printed while running; notes are kept for the final document."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def upload_progress(self, job: FileJob) -> None:
        return None

    def file_event(self, job: FileJob) -> None:
        return None


def summary_lines(run: SubmitRun, timeout: float | None) -> list[str]:
    counts: dict[str, int] = {}
    for job in run.jobs:
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in counts.items())
    lines = [f"session {run.session_id}: {parts or 'no files'}"]
    pending = [j for j in run.jobs if j.state == FileJobState.SUBMITTED]
    if pending and (run.timed_out or run.interrupted):
        why = "interrupted" if run.interrupted else f"timed out after {timeout:g} s"
        lines.append(f"{why}; still waiting for {len(pending)} file(s):")
        lines.extend(f"  {j.path}  request {j.request_id}  (asyncinfer status {j.request_id})" for j in pending)
    return lines


def job_document(job: FileJob) -> dict[str, Any]:
    return {
        "file": str(job.path),
        "blob": job.blob_name,
        "size": job.size,
        "status": job.state.value,
        "request_id": job.request_id,
        "rows_scored": job.rows_scored,
        "rows_failed": job.rows_failed,
        "row_errors": [{"row": e.row, "message": e.message} for e in job.row_errors],
        "error": None if job.error is None else {"code": job.error.code, "message": job.error.message},
        "output": None if job.output_path is None else str(job.output_path),
    }


def submit_document(run: SubmitRun, exit_code: int, notes: list[str]) -> dict[str, Any]:
    return {
        "session_id": run.session_id,
        "model": run.model,
        "waited": run.wait,
        "timed_out": run.timed_out,
        "interrupted": run.interrupted,
        "exit_code": exit_code,
        "files": [job_document(j) for j in run.jobs],
        "notes": notes,
    }


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A plain left-aligned text table."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths))]
    lines.extend(fmt.format(*row).rstrip() for row in rows)
    return lines
