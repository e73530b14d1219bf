"""Exceptions of the scoring service: input problems with a stable code, and rejected HTTP requests."""

from __future__ import annotations

from typing import Any

from shared.contracts import ErrorCode


class ScoringError(Exception):
    """The input cannot be scored as a whole; ``code`` goes into the failed InferenceResult."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RequestRejected(Exception):
    """An HTTP request the service answers with a 4xx/5xx status and a readable message."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.details = details or {}  # extra fields of the JSON error body
