"""The chaos run's report: the burst of small files is judged with the rest and reported on its own."""

from __future__ import annotations

from tests.support.chaos import ChaosReport, summary


def clean(files: int) -> ChaosReport:
    return ChaosReport(files=files, outputs_ok=files)


def test_a_run_passes_only_when_its_burst_does_too() -> None:
    report = clean(300)
    report.burst = clean(300)
    assert report.ok
    assert any(line.startswith("burst of small files dropped at once (one session): 300;") for line in report.lines())

    report.burst = ChaosReport(files=300, outputs_ok=299, missing=["chaos-burst-x/0007.csv"])
    assert not report.ok
    assert "  missing chaos-burst-x/0007.csv" in report.lines()
    report.burst = ChaosReport(files=300, outputs_ok=300, both=["chaos-burst-x/0008.csv"])
    assert not report.ok


def test_summary_counts_bursts_apart() -> None:
    first, second = clean(300), clean(300)
    first.burst = clean(300)
    second.burst = ChaosReport(files=300, outputs_ok=298, missing=["a", "b"])
    lines = summary([first, second])
    assert "burst of 300: lost 0, not matching 0, both 0, error records 0" in lines[0]
    assert "burst of 300: lost 2," in lines[1]
    assert lines[-1] == "1 of 2 runs clean: 0 lost, 0 not matching, 0 both; bursts: 2 lost, 0 not matching, 0 both"


def test_a_run_without_a_burst_reports_as_before() -> None:
    report = clean(40)
    assert report.ok
    assert not any("burst" in line for line in report.lines())
    assert "bursts" not in summary([report])[-1]
