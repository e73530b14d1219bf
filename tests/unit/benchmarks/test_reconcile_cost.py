"""The pipeline benchmark's lines for reconcile's cost: per file and by kind a deadline later, per pass when idle."""

from __future__ import annotations

from benchmarks.reconcile_cost import reconcile_lines


def test_a_deadline_later_per_file_by_kind_and_an_idle_pass_per_pass() -> None:
    due = {"files": 1000, "records": 1004, "check_outputs": "true", "storage_ops_per_file": 1.003,
           "storage": {"ledger: Set Blob Metadata": 1000, "ledger: List Blobs": 2, "output: List Blobs": 1},
           "report": {"cleaned": 1000, "reopened": 0}}  # fmt: skip
    idle = {"storage_ops": 2, "storage": {"ledger: List Blobs": 2}, "records": 1004, "schedule": "0 */5 * * * *"}
    later, quiet = reconcile_lines(due, idle)
    assert "RECONCILE_CHECK_OUTPUTS=true): 1.00 storage ops per file" in later
    assert "ledger: Set Blob Metadata 1.000, ledger: List Blobs 0.002, output: List Blobs 0.001" in later
    assert later.endswith("cleaned 1000")
    assert quiet == ("  reconcile when nothing is due: 2 storage ops per pass (ledger: List Blobs 2) over 1,004 "
                     "records; timer schedule '0 */5 * * * *'")  # fmt: skip
