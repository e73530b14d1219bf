"""The ``submit`` command's core: check files, upload them with session metadata, optionally wait for results.

Request ids are known at upload time (``derive_request_id`` of container, blob name and the new ETag, as the
function app derives them), so each result message is matched to its file by id. Messages are completed
only after the file's output is safely on disk.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

from client.errors import ExitCode, ServiceError, UsageError
from client.localfiles import LocalRejection, check_input, output_path
from client.ports import InputStore, OutputFetcher, ResultDelivery, ResultInbox
from shared.blobnames import path_problem
from shared.contracts import (
    TRANSIENT_ERRORS,
    ContractError,
    DataFormat,
    ErrorInfo,
    InferenceResult,
    OutputRef,
    ResultStatus,
    RowError,
    derive_request_id,
    output_blob_name,
)

logger = logging.getLogger(__name__)

POLL_SECONDS = 5.0


class FileJobState(StrEnum):
    NOT_UPLOADED = "not_uploaded"  # not attempted (yet, or because an earlier upload hit a service error)
    REJECTED = "rejected"  # refused locally, never uploaded
    UPLOAD_FAILED = "upload_failed"
    SUBMITTED = "submitted"  # uploaded; no result (yet)
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class FileJob:
    path: Path
    blob_name: str
    size: int = 0
    format: DataFormat | None = None
    state: FileJobState = FileJobState.NOT_UPLOADED
    request_id: str | None = None
    uploaded_bytes: int = 0
    error: ErrorInfo | None = None
    rows_scored: int = 0
    rows_failed: int = 0
    row_errors: tuple[RowError, ...] = ()
    output_path: Path | None = None


@dataclass
class SubmitRun:
    session_id: str
    model: str
    wait: bool
    jobs: list[FileJob] = field(default_factory=list)
    timed_out: bool = False
    interrupted: bool = False

    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.timed_out:
            return ExitCode.TIMEOUT
        if any(j.state not in (FileJobState.SUBMITTED, FileJobState.SUCCEEDED) for j in self.jobs):
            return ExitCode.FAILED
        return ExitCode.OK


class SubmitReporter(Protocol):
    def upload_progress(self, job: FileJob) -> None: ...

    def file_event(self, job: FileJob) -> None:
        """A file was rejected, uploaded, failed to upload, or got its result."""
        ...

    def note(self, text: str) -> None: ...


def blob_name_for(path: Path, prefix: str | None) -> str:
    return f"{prefix.strip('/')}/{path.name}" if prefix else path.name


def plan_jobs(paths: list[Path], prefix: str | None) -> list[FileJob]:
    """One job per file; missing files and two files with one blob name are usage errors."""
    if prefix is not None and (problem := path_problem(prefix.strip("/"))):
        raise UsageError(f"--prefix {prefix!r}: {problem}")
    jobs: list[FileJob] = []
    seen: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        name = blob_name_for(path, prefix)
        if name in seen:
            raise UsageError(f"{path} and {seen[name]} would both upload as {name!r}; submit them separately")
        seen[name] = path
        jobs.append(FileJob(path=path, blob_name=name))
    return jobs


def upload_all(run: SubmitRun, store: InputStore, container: str, max_bytes: int, reporter: SubmitReporter) -> None:
    for job in run.jobs:
        try:
            checked = check_input(job.path, max_bytes)
        except LocalRejection as exc:
            job.state, job.error = FileJobState.REJECTED, ErrorInfo(code=exc.code.value, message=exc.message)
            reporter.file_event(job)
            continue
        job.size, job.format = checked.size, checked.format

        def progress(done: int, job: FileJob = job) -> None:
            job.uploaded_bytes = done
            reporter.upload_progress(job)

        metadata = {"session_id": run.session_id, "model": run.model}
        try:
            blob = store.upload(job.path, job.blob_name, metadata, checked.format.content_type, progress)
        except OSError as exc:  # a local read error while streaming the file
            job.state, job.error = FileJobState.UPLOAD_FAILED, ErrorInfo("upload_failed", f"cannot read it ({exc})")
            reporter.file_event(job)
            continue
        except ServiceError as exc:  # storage is down or refuses us: the next files would fail the same way
            job.state, job.error = FileJobState.UPLOAD_FAILED, ErrorInfo("upload_failed", str(exc))
            reporter.file_event(job)
            raise
        job.state, job.uploaded_bytes = FileJobState.SUBMITTED, job.size
        job.request_id = derive_request_id(container, blob.name, blob.etag)
        reporter.file_event(job)


class _HashingSink:
    """Counts and hashes what is written through it, so a downloaded output can be checked."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)


def save_output(output: OutputRef, target: Path, fetcher: OutputFetcher, input_name: str) -> None:
    """Write the output to ``target`` (via a ``.part`` file), checking its size and SHA-256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with part.open("wb") as handle:
            sink = _HashingSink(handle)
            if output.inline_b64 is not None:
                sink.write(output.inline_bytes())
            elif output.blob_url is not None:
                fetcher.download(output.blob_url, sink, output_blob_name(input_name))
        if sink.size != output.size or sink.digest.hexdigest() != output.sha256:
            raise ContractError(f"output of {sink.size} bytes does not match the result's size {output.size} / sha256")
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)


class ResultCollector:
    """Matches result messages to this run's files and settles them."""

    def __init__(self, run: SubmitRun, fetcher: OutputFetcher, out_dir: Path | None, reporter: SubmitReporter) -> None:
        self.run, self.fetcher, self.out_dir, self.reporter = run, fetcher, out_dir, reporter

    def pending(self) -> list[FileJob]:
        return [j for j in self.run.jobs if j.state == FileJobState.SUBMITTED]

    def handle(self, delivery: ResultDelivery) -> None:
        try:
            result = InferenceResult.from_json(delivery.body)
        except ContractError as exc:
            self.reporter.note(f"a result message does not follow the contract ({exc}); dead-lettered")
            delivery.dead_letter("contract_error", str(exc)[:1000])
            return
        job = self._match(result)
        if job is None:
            self.reporter.note(f"ignored a result for request {result.request_id} ({result.input_name}): not this run")
            delivery.complete()
            return
        if result.error is not None and result.error.code in TRANSIENT_ERRORS:
            # The function app submits this request again itself; its next result is the one to wait for.
            self.reporter.note(f"{job.path.name}: {result.error.message}; the pipeline will try again")
            delivery.complete()
            return
        self._apply(job, result)
        delivery.complete()
        self.reporter.file_event(job)

    def _match(self, result: InferenceResult) -> FileJob | None:
        # By request id only: a same-named result with another id is for an earlier upload of that name
        # (a re-used session), not for this one.
        return next((j for j in self.pending() if j.request_id == result.request_id), None)

    def _apply(self, job: FileJob, result: InferenceResult) -> None:
        job.request_id = result.request_id
        job.rows_scored, job.rows_failed, job.row_errors = result.rows_scored, result.rows_failed, result.row_errors
        if result.status == ResultStatus.FAILED or result.output is None:
            job.state, job.error = FileJobState.FAILED, result.error or ErrorInfo("internal_error", "no output")
            return
        target = output_path(job.path, self.out_dir)
        try:
            save_output(result.output, target, self.fetcher, result.input_name)
        except (OSError, ContractError) as exc:
            job.state = FileJobState.FAILED
            job.error = ErrorInfo("output_unavailable", f"scored, but the output could not be saved to {target}: {exc}")
            return
        except Exception as exc:  # any SDK error downloading the results blob is this file's failure
            logger.debug("output download failed", exc_info=True)
            job.state = FileJobState.FAILED
            job.error = ErrorInfo("output_unavailable", f"scored, but downloading the output failed: {exc}")
            return
        job.state, job.output_path = FileJobState.SUCCEEDED, target


def collect_results(
    collector: ResultCollector,
    inbox: ResultInbox,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Receive until every uploaded file has its result or ``timeout`` seconds passed (then mark the run)."""
    deadline = clock() + timeout
    while collector.pending():
        remaining = deadline - clock()
        if remaining <= 0:
            collector.run.timed_out = True
            return
        for delivery in inbox.receive(min(POLL_SECONDS, remaining)):
            collector.handle(delivery)
