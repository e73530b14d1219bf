"""What scoring one chunk of records produces, and helpers shared by the CSV and JSON Lines formats."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.contracts import RowError

PROBABILITY_DECIMALS = 6


@dataclass
class ChunkResult:
    data: bytes  # output bytes of the good rows, in the input's format
    rows: int  # data rows seen in the chunk (good + bad)
    scored: int
    errors: list[RowError] = field(default_factory=list)  # first bad rows only
    failed: int = 0


def probability_array(proba: np.ndarray) -> pa.Array:
    """Probabilities rounded to 6 decimals, as the shortest text that reads back to the same value."""
    rounded = pc.round(pa.array(proba, type=pa.float64()), PROBABILITY_DECIMALS)
    return pc.cast(rounded, pa.large_string())


def probability_text(proba: np.ndarray) -> list[str]:
    texts: list[str] = probability_array(proba).to_pylist()
    return texts


def row_errors(errors: list[tuple[int, str]], row_numbers: np.ndarray) -> list[RowError]:
    """Translate (index in batch, reason) into RowError with the file's 1-based data row number."""
    return [RowError(row=int(row_numbers[index]), message=reason) for index, reason in errors]
