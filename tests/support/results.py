"""Inference results as the scoring service publishes them, for the client's tests (with fakes or the emulator)."""

from __future__ import annotations

from typing import Any

from shared.contracts import DataFormat, ErrorInfo, InferenceResult, OutputRef, ResultStatus, RowError

MODEL = "churn"
ROWS = 2  # the rows of the tests' small input files


def succeeded(
    request_id: str,
    input_name: str,
    output: bytes | OutputRef,
    rows_scored: int = ROWS,
    **extra: Any,
) -> InferenceResult:
    """Every row scored; ``output`` carried inline (bytes: an uncompressed CSV) or as the reference given."""
    ref = output if isinstance(output, OutputRef) else OutputRef.inline(output, DataFormat.CSV, None)
    return InferenceResult(
        request_id, ResultStatus.SUCCEEDED, input_name, MODEL, rows_scored=rows_scored, output=ref, **extra
    )


def failed(
    request_id: str, input_name: str, error: ErrorInfo, row_errors: tuple[RowError, ...] = (), rows_failed: int = 0
) -> InferenceResult:
    """No output: the file's ``error``, with the first ``row_errors`` of ``rows_failed`` bad rows."""
    return InferenceResult(
        request_id, ResultStatus.FAILED, input_name, MODEL, rows_failed=rows_failed, row_errors=row_errors, error=error
    )
