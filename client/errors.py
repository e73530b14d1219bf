"""Errors the CLI turns into one readable line and an exit code (no traceback unless ``--debug``)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # some requests or files failed; the reasons were printed
    USAGE = 2  # bad arguments or configuration
    TIMEOUT = 3  # gave up waiting before every request reached a terminal state
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CliError(Exception):
    """An error with a user-facing message and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(CliError):
    exit_code = ExitCode.USAGE


class ServiceError(CliError):
    """A service could not be reached or refused the request."""

    exit_code = ExitCode.FAILED


class ScoringRejected(ServiceError):
    """The scoring route refused the rows (4xx with a JSON body: ``message``, maybe ``code`` and ``row_errors``)."""

    def __init__(self, status: int, message: str, code: str | None, row_errors: list[dict[str, Any]]) -> None:
        super().__init__(
            f"the scoring endpoint rejected the request ({status}): {message}" + (f" [{code}]" if code else "")
        )
        self.status, self.message, self.code, self.row_errors = status, message, code, row_errors
