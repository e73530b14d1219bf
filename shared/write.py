"""Use case ``write``: store one :class:`InferenceResult` as the output file or as an error record.

The output is written in a single commit (one Put Blob for inline bytes; Put Blob From URL, or Copy Blob
where the service lacks it, for outputs staged in the results container), so readers never see a partial
file. It is idempotent: the output blob carries the request id and SHA-256 of its bytes in its metadata,
and a result whose output is already there is not written again. Inline outputs are written create-only
first, so the usual case (no output yet) costs one request; the comparison happens only on a conflict, and
a different output is replaced only by a result of the input's current version. Whether an output or an
error record stands for an input, and which output, is decided in :mod:`shared.errors`; the request's
state moves on through :meth:`shared.ledger.Ledger.advance`, and ``reconcile`` later checks that the
output the record names exists. A success whose result carries a :class:`shared.ledger.Handover` (a small file:
``score_request`` did not write ``accepted``) is recorded against the handed-over record and its ETag without
reading the ledger; any other result reads the record first.

A staged output (a blob in the results container the endpoint wrote) is copied only if it is a blob of our
own account, in ``RESULTS_CONTAINER``, under the result's request id: a result naming any other URL gets an
error record (``blob_url_not_allowed``) instead, so a result message cannot make the writer copy from
elsewhere. The staged output is deleted once the final output is written and the ledger says so; a
redelivered result finds the output already written and deletes again (a no-op). A failed delete is
logged, not raised: the lifecycle rule on the container removes leftovers.

Results arrive in batches (the writer's trigger takes up to ``maxMessageBatchSize`` messages of one
session), written by :func:`write_batch` in three steps. First each result up to its output (or error record):
those for different input files at once on :data:`WRITE_THREADS` threads, those for the same input file
(:func:`output_key`) one after the other in message order (:func:`shared.concurrency.run_concurrently`), so two
attempts or versions of one file never race on its output; a result that another of its file follows in the
batch is written to the end here. Then, where several successes' error records would share a folder, one
listing of that folder, made after their outputs were written, shows which have none (:func:`without_error_records`):
those skip the look-up for an error record their output supersedes, which costs a read per file otherwise. Last,
each success is finished (:func:`finish`): that look-up where still needed, the ledger, the staged output's
removal. Each result's outcome is kept apart; the trigger decides what a failure means for the batch.
:func:`write_result` writes a single result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from shared.blobnames import name_problem, path_problem
from shared.concurrency import run_concurrently
from shared.contracts import (
    TRANSIENT_ERRORS,
    ErrorCode,
    ErrorInfo,
    InferenceResult,
    RequestState,
    ResultStatus,
    error_blob_name,
    output_blob_name,
)
from shared.errors import output_may_replace, remove_superseded_error, write_error_record
from shared.ledger import Handover, Ledger, LedgerRecord, failed, succeeded
from shared.listing import find_by_listing
from shared.ports import BlobInfo, BlobNotFound, BlobStore, Clock, PreconditionFailed, properties_or_none
from shared.settings import Settings

logger = logging.getLogger(__name__)

META_REQUEST_ID = "request_id"
META_SHA256 = "sha256"
# Results of one batch written at once: each write waits on storage, not on CPU (four requests in a row), and
# each thread has its own storage client. With 4, the results of a 1,000-file burst in one session waited a
# median 5.5 s for the writer, with 8 3.3 s (docs/performance-log.md).
WRITE_THREADS = 8


class WriteOutcome(StrEnum):
    WRITTEN = "written"
    ALREADY_WRITTEN = "already_written"
    ERROR_RECORDED = "error_recorded"
    SUPERSEDED = "superseded"
    LEFT_FOR_RECONCILE = "left_for_reconcile"


class OutputMismatch(RuntimeError):
    """The copied output does not have the size the result announced (retried by the host)."""


def output_key(body: bytes) -> str | None:
    """The input file a result message is for (results for one file are written in order); None if unreadable."""
    try:
        return InferenceResult.from_json(body).input_name
    except ValueError:
        return None


def write_result(body: bytes, *, settings: Settings, blobs: BlobStore, ledger: Ledger, now: datetime) -> WriteOutcome:
    """Writes one result: its output (and then what :func:`finish` does) or its error record."""
    step = write_output(body, settings=settings, blobs=blobs, ledger=ledger, now=now)
    if isinstance(step, WriteOutcome):
        return step
    return finish(step, error_record_absent=False, settings=settings, blobs=blobs, ledger=ledger, now=now)


def write_batch(
    bodies: Sequence[bytes],
    *,
    settings: Settings,
    blobs: BlobStore,
    ledger: Ledger,
    clock: Clock,
    within: Callable[[int], AbstractContextManager[object]] = lambda _index: nullcontext(),
) -> list[WriteOutcome | Exception]:
    """Writes the results of one batch (see the module docstring) and returns each one's outcome, or the exception
    it raised, in the order of ``bodies``. Each step on the ``index``-th result runs inside ``within(index)``."""
    keys = [output_key(body) for body in bodies]
    last = {key: index for index, key in enumerate(keys)}  # None (unreadable) stands alone and fails on its own

    def first(index: int) -> WriteOutcome | OutputWritten:
        with within(index):
            now, key = clock.now(), keys[index]
            if key is not None and last[key] != index:
                # A later result of the same input follows in this batch: it must find this one recorded.
                return write_result(bodies[index], settings=settings, blobs=blobs, ledger=ledger, now=now)
            return write_output(bodies[index], settings=settings, blobs=blobs, ledger=ledger, now=now)

    steps = run_concurrently(range(len(bodies)), first, key=keys.__getitem__, threads=WRITE_THREADS, name="write")
    written = {index: step for index, step in enumerate(steps) if isinstance(step, OutputWritten)}
    try:
        absent = without_error_records(list(written.values()), blobs, settings.output_container)
    except Exception:  # the listing only saves reads: without it each success reads its error record's name
        logger.warning("listing the error records of %s outputs failed; each is looked up on its own", len(written),
                       exc_info=True)  # fmt: skip
        absent = set()

    def second(index: int) -> WriteOutcome:
        with within(index):
            step = written[index]
            return finish(step, error_record_absent=step.input_name in absent, settings=settings, blobs=blobs,
                          ledger=ledger, now=clock.now())  # fmt: skip

    outcomes = run_concurrently(list(written), second, key=keys.__getitem__, threads=WRITE_THREADS, name="write")
    finished = dict(zip(written, outcomes, strict=True))
    return [finished[index] if isinstance(step, OutputWritten) else step for index, step in enumerate(steps)]


def write_output(
    body: bytes, *, settings: Settings, blobs: BlobStore, ledger: Ledger, now: datetime
) -> WriteOutcome | OutputWritten:
    """Writes a failure's error record, or a success's output; a success whose output is now there comes back
    as :class:`OutputWritten`, for :func:`finish`. Any other outcome is final."""
    result = InferenceResult.from_json(body)
    staged = None
    if result.output is not None and result.output.blob_url is not None:
        staged = _staged_output(blobs, result.output.blob_url, result.request_id, settings.results_container)
        if staged is None:
            result = _refused_output(result, result.output.blob_url, settings.results_container)
    # Only after a refused output has made the result a failure: a failure is decided on the stored record.
    record, etag = _ledger_record(result, ledger)
    input_name = record.input_name if record is not None else result.input_name
    if record is not None and record.input_name != result.input_name:
        logger.warning("result %s names input %r; the ledger says %r", result.request_id, result.input_name,
                       record.input_name)  # fmt: skip
    if problem := name_problem(input_name):
        raise ValueError(f"result {result.request_id}: unusable input name {input_name!r}: {problem}")
    base = record or LedgerRecord.for_result(result, settings.input_container, now)
    if result.status == ResultStatus.SUCCEEDED:
        return _store_output(result, input_name, base, staged, settings=settings, blobs=blobs, ledger=ledger,
                             known=(record, etag))  # fmt: skip
    if record is not None and record.state == RequestState.SUCCEEDED:
        logger.info("failed result for %s attempt %s arrives after success; ignored", result.request_id,
                    result.attempt)  # fmt: skip
        return WriteOutcome.SUPERSEDED
    assert result.error is not None
    if result.error.code in TRANSIENT_ERRORS and record is not None and not record.terminal:
        # The record and its in-flight marker stay as they are: reconcile submits the request again once the
        # result deadline has passed, and records result_timeout only when no attempt is left.
        logger.warning("request %s attempt %s: %s (%s); left for reconcile to submit again", result.request_id,
                       result.attempt, result.error.code, result.error.message)  # fmt: skip
        return WriteOutcome.LEFT_FOR_RECONCILE
    location = write_error_record(
        blobs,
        settings.output_container,
        input_name=input_name,
        input_container=base.input_container,
        input_etag=base.etag,
        request_id=result.request_id,
        attempt=result.attempt,
        code=result.error.code,
        message=result.error.message,
        rows_scored=result.rows_scored,
        rows_failed=result.rows_failed,
        row_errors=result.row_errors,
        now=now,
    )
    transition = failed(
        base,
        now,
        code=result.error.code,
        message=result.error.message,
        error_location=location,
        rows_scored=result.rows_scored,
        rows_failed=result.rows_failed,
    )
    ledger.advance(
        result.request_id,
        lambda current: _with_completed(transition(current), result.completed_at),
        now=now,
        known=(record, etag),
    )
    logger.info("request %s failed (%s); error record %s", result.request_id, result.error.code, location)
    return WriteOutcome.ERROR_RECORDED


def _ledger_record(result: InferenceResult, ledger: Ledger) -> tuple[LedgerRecord | None, str | None]:
    """The record the final write goes against: for a success, the one ``score_request`` handed over in the
    request's context when there is one (no read; its ETag condition proves it is still current), else the
    stored one. A failure always reads, as whether its error record is written depends on the stored state."""
    if result.status == ResultStatus.SUCCEEDED:
        handover = Handover.from_context(result.context, result.request_id, result.attempt)
        if handover is not None:
            return handover.record, handover.etag
    return ledger.read(result.request_id)


def _staged_output(blobs: BlobStore, url: str, request_id: str, results_container: str) -> tuple[str, str] | None:
    """(container, name) of ``url`` if it is a staged output of this request: a blob of our own account, in
    the results container, under the request id, with a safe path; None for any other URL."""
    located = blobs.locate(url)
    if located is None or located[0] != results_container:
        return None
    name = located[1]
    return located if name.startswith(f"{request_id}/") and path_problem(name) is None else None


def _refused_output(result: InferenceResult, url: str, results_container: str) -> InferenceResult:
    """The result as a failure: its output is not a staged output the writer may copy."""
    where = url.split("?")[0]
    message = (f"the result names its output at {where}, which is not a staged output of this request (a blob of "
               f"this storage account in container {results_container!r} under '{result.request_id}/'); "
               "it was not copied")  # fmt: skip
    logger.error("request %s attempt %s: %s", result.request_id, result.attempt, message)
    return replace(result, status=ResultStatus.FAILED, output=None,
                   error=ErrorInfo(ErrorCode.BLOB_URL_NOT_ALLOWED, message))  # fmt: skip


def _with_completed(record: LedgerRecord | None, completed_at: str) -> LedgerRecord | None:
    return None if record is None else replace(record, completed_at=completed_at)


@dataclass(frozen=True)
class OutputWritten:
    """A success whose output is written: what :func:`finish` still does for it."""

    result: InferenceResult
    input_name: str
    base: LedgerRecord
    staged: tuple[str, str] | None
    known: tuple[LedgerRecord | None, str | None]
    outcome: WriteOutcome

    @property
    def error_record(self) -> str:
        """The name of the error record this output would supersede, in the output container."""
        return error_blob_name(self.input_name)


def finish(
    written: OutputWritten,
    *,
    error_record_absent: bool,
    settings: Settings,
    blobs: BlobStore,
    ledger: Ledger,
    now: datetime,
) -> WriteOutcome:
    """After the output is written: removes an error record it supersedes (unless a listing made after the output
    was written showed there is none: ``error_record_absent``), records the success and deletes the staged output."""
    result, base, container = written.result, written.base, settings.output_container
    if not error_record_absent:
        remove_superseded_error(
            blobs,
            container,
            input_container=base.input_container,
            input_name=written.input_name,
            request_id=result.request_id,
            input_etag=base.etag,
        )
    location = f"{container}/{output_blob_name(written.input_name)}"
    ledger.advance(
        result.request_id,
        succeeded(base, now, location, result.rows_scored, result.rows_failed, result.completed_at),
        now=now,
        known=written.known,
    )
    logger.info("request %s succeeded: %s (%s rows, %s failed)", result.request_id, location, result.rows_scored,
                result.rows_failed)  # fmt: skip
    if written.staged is not None:
        _delete_staged(blobs, written.staged, result.request_id)
    return written.outcome


def without_error_records(written: Sequence[OutputWritten], blobs: BlobStore, container: str) -> set[str]:
    """The input names of ``written`` that have no error record: those in a folder of error records that a listing,
    made after the outputs were written, ran through without showing theirs (:mod:`shared.listing`). Each output
    was written before the listing, so an error record written after it is checked against the output by its
    own writer (:mod:`shared.errors`), as after a read of the record's name."""
    names = {(container, w.error_record): w.input_name for w in written}
    return {names[blob] for blob in find_by_listing(blobs, names).absent}


def _store_output(
    result: InferenceResult,
    input_name: str,
    base: LedgerRecord,
    staged: tuple[str, str] | None,
    *,
    settings: Settings,
    blobs: BlobStore,
    ledger: Ledger,
    known: tuple[LedgerRecord | None, str | None],
) -> WriteOutcome | OutputWritten:
    output = result.output
    assert output is not None
    container, name = settings.output_container, output_blob_name(input_name)
    metadata = {META_REQUEST_ID: result.request_id, META_SHA256: output.sha256}
    content_type = output.format.content_type if output.compression is None else "application/gzip"

    def may_replace() -> bool:
        return output_may_replace(blobs, input_container=base.input_container, input_name=input_name,
                                  input_etag=base.etag)  # fmt: skip

    if output.inline_b64 is not None:
        outcome = _write_inline(blobs, container, name, output.inline_bytes(), output.sha256, content_type, metadata,
                                may_replace)  # fmt: skip
    elif _holds(existing := properties_or_none(blobs, container, name), output.sha256, output.size):
        outcome = WriteOutcome.ALREADY_WRITTEN
    elif existing is not None and not may_replace():
        outcome = WriteOutcome.SUPERSEDED
    else:
        assert output.blob_url is not None
        try:
            blobs.copy_from_url(output.blob_url, container, name, content_type=content_type, metadata=metadata)
        except BlobNotFound:
            current = ledger.get(result.request_id)
            if current is None or current.state != RequestState.SUCCEEDED:
                raise
            # An older result arriving again after its staged output was written and removed, while another
            # attempt's output now stands: nothing to do.
            logger.info("result %s attempt %s: staged output gone, request already succeeded", result.request_id,
                        result.attempt)  # fmt: skip
            return WriteOutcome.SUPERSEDED
        copied = blobs.properties(container, name)
        if copied.size != output.size:
            raise OutputMismatch(f"{container}/{name}: copied {copied.size} bytes, result says {output.size}")
        outcome = WriteOutcome.WRITTEN
    if outcome == WriteOutcome.SUPERSEDED:
        logger.info("request %s: the output of %r stands for a newer version of the input; not replaced",
                    result.request_id, input_name)  # fmt: skip
    return OutputWritten(result, input_name, base, staged, known, outcome)


def _delete_staged(blobs: BlobStore, staged: tuple[str, str], request_id: str) -> None:
    """Removes a staged output (checked by :func:`_staged_output`) whose final output is written."""
    try:
        blobs.delete(*staged)
    except Exception:  # the output is written: a leftover is only storage, removed by the lifecycle rule
        logger.warning("request %s: could not delete staged output %s/%s", request_id, *staged, exc_info=True)


def _holds(existing: BlobInfo | None, sha256: str, size: int) -> bool:
    """The output blob exists with this content (a redelivered result): nothing to write again."""
    return existing is not None and existing.metadata.get(META_SHA256) == sha256 and existing.size == size


def _write_inline(
    blobs: BlobStore,
    container: str,
    name: str,
    data: bytes,
    sha256: str,
    content_type: str,
    metadata: Mapping[str, str],
    may_replace: Callable[[], bool],
) -> WriteOutcome:
    """Creates the output; only when one exists already is it compared, and replaced if it differs and
    ``may_replace()`` allows."""
    try:
        blobs.write(container, name, data, content_type=content_type, metadata=metadata, if_none_match_any=True)
        return WriteOutcome.WRITTEN
    except PreconditionFailed:
        if _holds(properties_or_none(blobs, container, name), sha256, len(data)):
            return WriteOutcome.ALREADY_WRITTEN
    if not may_replace():
        return WriteOutcome.SUPERSEDED
    blobs.write(container, name, data, content_type=content_type, metadata=metadata)
    return WriteOutcome.WRITTEN
