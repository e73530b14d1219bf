"""What scoring one chunk of records produces, shared by every input format."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.contracts import RowError


@dataclass
class ChunkResult:
    data: bytes  # output bytes of the good rows, in the input's format
    rows: int  # data rows seen in the chunk (good + bad)
    scored: int
    errors: list[RowError] = field(default_factory=list)  # first bad rows only
    failed: int = 0


def row_errors(errors: list[tuple[int, str]], row_numbers: np.ndarray) -> list[RowError]:
    """Translate (index in batch, reason) into RowError with the file's 1-based data row number."""
    return [RowError(row=int(row_numbers[index]), message=reason) for index, reason in errors]
