"""Operations the emulator served, by kind, kept in ``operations.json`` of its data directory.

Azure bills and throttles Service Bus by operations and shows them as metrics (incoming requests, incoming and
outgoing messages); the emulator counts the same things so a benchmark can say what each file costs. The
counts start at zero with each emulator process and are written at most once a second while they change
(``python -m devstack.servicebus stats --data DIR`` prints them). Kinds: ``connections opened``, ``links
attached``, ``request send|cbs|mgmt`` (one per transfer a client sends; a batch is one), ``messages in`` (each
message of a batch), ``messages out`` (deliveries to receivers), ``management <operation>`` (lock renewals,
session state, peeks, ...), ``settle <outcome>`` (complete, abandon, dead-letter).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

FILE_NAME = "operations.json"
WRITE_INTERVAL_SECONDS = 1.0


class OperationCounts:
    """Counts of one emulator process; owned by its event loop thread."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self.counts: Counter[str] = Counter()
        self._dirty = False
        self._written_at = 0.0

    def add(self, kind: str, count: int = 1) -> None:
        self.counts[kind] += count
        self._dirty = True

    def maybe_write(self) -> None:
        if self._dirty and time.monotonic() >= self._written_at + WRITE_INTERVAL_SECONDS:
            self.write()

    def write(self) -> None:
        self._dirty = False
        self._written_at = time.monotonic()
        partial = self.path.with_name(f".{FILE_NAME}.tmp")
        partial.write_text(json.dumps(dict(sorted(self.counts.items()))))
        os.replace(partial, self.path)


def read_operations(data_dir: Path) -> dict[str, int]:
    """The counts last written by the emulator serving ``data_dir`` (empty before its first operation)."""
    try:
        counts: dict[str, int] = json.loads((data_dir / FILE_NAME).read_text())
    except FileNotFoundError:
        return {}
    return counts
