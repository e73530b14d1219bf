"""The emulator's operation counts: written at most once a second while they change, read back as written."""

from __future__ import annotations

from pathlib import Path

from devstack.servicebus import opcounts
from devstack.servicebus.opcounts import OperationCounts, read_operations


def test_counts_are_written_when_they_change_and_read_back(tmp_path: Path) -> None:
    assert read_operations(tmp_path) == {}
    counts = OperationCounts(tmp_path)
    counts.add("messages in", 3)
    counts.add("settle complete")
    counts.maybe_write()
    assert read_operations(tmp_path) == {"messages in": 3, "settle complete": 1}
    counts.add("messages in")
    counts.maybe_write()  # within a second of the last write: not yet
    assert read_operations(tmp_path)["messages in"] == 3
    counts.write()
    assert read_operations(tmp_path)["messages in"] == 4


def test_nothing_is_written_while_nothing_changes(tmp_path: Path) -> None:
    counts = OperationCounts(tmp_path)
    counts.maybe_write()
    assert not (tmp_path / opcounts.FILE_NAME).exists()
