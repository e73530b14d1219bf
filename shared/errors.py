"""Error records: ``errors/<input name>.error.json`` in the output container, one per failed input file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from shared.blobnames import safe_error_name
from shared.contracts import RowError, iso
from shared.ports import BlobStore

ERROR_SCHEMA = "inference-error"


def write_error_record(
    blobs: BlobStore,
    container: str,
    *,
    input_name: str,
    request_id: str | None,
    code: str,
    message: str,
    now: datetime,
    input_container: str | None = None,
    attempt: int | None = None,
    rows_scored: int = 0,
    rows_failed: int = 0,
    row_errors: Sequence[RowError] = (),
) -> str:
    """Writes (or replaces) the record and returns its location ``<container>/<name>``."""
    name = safe_error_name(input_name)
    document = {
        "schema": ERROR_SCHEMA,
        "version": 1,
        "request_id": request_id,
        "input": {"container": input_container, "name": input_name},
        "attempt": attempt,
        "error": {"code": code, "message": message},
        "rows_scored": rows_scored,
        "rows_failed": rows_failed,
        "row_errors": [{"row": e.row, "message": e.message} for e in row_errors],
        "recorded_at": iso(now),
    }
    data = json.dumps(document, indent=2, sort_keys=True).encode()
    metadata = {"code": code}
    if request_id:
        metadata["request_id"] = request_id
    blobs.write(container, name, data, content_type="application/json", metadata=metadata)
    return f"{container}/{name}"
