"""A short fault-injection run: every stack service is killed with SIGKILL while files flow, and nothing is lost.

It runs ``tests.support.chaos`` on its own isolated stack (not the session's, since it kills services): 40 files
and a burst of 40 small ones dropped at once before the first kill, and the scoring server, the functions host,
the Service Bus emulator and Azurite each killed and restarted in turn. Every input must end with exactly one
output that matches the model loaded in this process, or exactly one error record; inputs Azurite lost on
SIGKILL are uploaded again by the client (see the module docs of ``tests.support.chaos``), and the logs hold no
secrets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos import KILL_ORDER, run

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

FILES = 40
BURST = 40


@pytest.mark.timeout(600)
def test_nothing_is_lost_or_duplicated_when_services_are_killed(tmp_path: Path) -> None:
    report = run(
        files=FILES, rows=40, pace=0.6, settle_timeout=240, base_dir=tmp_path, quiet=True, burst=BURST, burst_rows=10
    )
    summary = "\n".join(report.lines()) + f"\nservice logs: {tmp_path / 'logs'}"
    assert [k["service"] for k in report.kills] == list(KILL_ORDER), summary
    assert not report.missing, summary
    assert not report.both, summary
    assert not report.outputs_wrong, summary
    assert not report.secrets_in_logs, summary
    assert report.outputs_ok + len(report.error_records) == FILES, summary
    # The files are all good: an error record would mean the pipeline gave up on one (reported, and failed here).
    assert not report.error_records, summary
    burst = report.burst
    assert burst is not None, summary
    assert (burst.outputs_ok, burst.missing, burst.both, burst.outputs_wrong, burst.error_records) == (
        BURST,
        [],
        [],
        {},
        {},
    ), summary
