"""`submit` end to end through client.app.run with fakes of the client's ports: exit codes and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from client_fakes import FakeDelivery, FakeInbox, World

from client.app import run
from client.ports import ResultDelivery
from shared.contracts import DataFormat, ErrorInfo, OutputRef, RowError, derive_request_id
from tests.support.results import failed as failed_result
from tests.support.results import succeeded

CSV = "customerID,tenure\nA-1,3\nB-2,40\n"
SCORED = b"customerID,tenure,prediction,probability\nA-1,3,1,0.8\nB-2,40,0,0.1\n"


def rid(blob_name: str, upload_number: int) -> str:
    """The request id of the n-th upload in FakeStore (its ETags are "0x1", "0x2"...)."""
    return derive_request_id("input", blob_name, f'"0x{upload_number}"')


def ok(name: str, number: int, data: bytes = SCORED, **extra: object) -> FakeDelivery:
    return FakeDelivery(succeeded(rid(name, number), name, data, **extra).to_json())


def failed(name: str, number: int) -> FakeDelivery:
    row_errors = (RowError(1, "tenure: not a number"), RowError(2, "gender: unknown level 'X'"))
    error = ErrorInfo("no_valid_rows", "no row could be scored")
    return FakeDelivery(failed_result(rid(name, number), name, error, row_errors, rows_failed=3).to_json())


def make_files(tmp_path: Path, *names: str) -> list[str]:
    for name in names:
        (tmp_path / name).write_text(CSV)
    return [str(tmp_path / n) for n in names]


def test_wait_saves_each_output_beside_its_input_and_completes_the_messages(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv", "b.csv")
    deliveries = [ok("b.csv", 2), ok("a.csv", 1)]
    world.inbox = FakeInbox(world.clock, [[deliveries[0]], [], [deliveries[1]]])
    code = run(
        ["submit", *files, "--wait", "--session", "s-1", "--model", "churn"], world.console(), world.adapters(), env={}
    )
    assert code == 0, world.err.getvalue()
    assert (tmp_path / "a.scored.csv").read_bytes() == SCORED
    assert (tmp_path / "b.scored.csv").read_bytes() == SCORED
    assert [d.settled for d in deliveries] == ["completed", "completed"]
    assert world.sessions == ["s-1"]
    assert [(u[0], u[1], u[2]) for u in world.store.uploads] == [
        ("a.csv", {"session_id": "s-1", "model": "churn"}, "text/csv"),
        ("b.csv", {"session_id": "s-1", "model": "churn"}, "text/csv"),
    ]
    out = world.out.getvalue()
    assert "session s-1" in out and f"request {rid('a.csv', 1)}" in out
    assert "2 succeeded" in out


def test_failed_result_prints_code_message_and_row_errors_and_exits_1(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")
    world.inbox = FakeInbox(world.clock, [[failed("a.csv", 1)]])
    code = run(["submit", *files, "--wait"], world.console(), world.adapters(), env={})
    assert code == 1
    out = world.out.getvalue()
    assert "no row could be scored [no_valid_rows]" in out
    assert "row 1: tenure: not a number" in out and "row 2: gender: unknown level 'X'" in out
    assert "and 1 more bad rows" in out
    assert not (tmp_path / "a.scored.csv").exists()


def test_a_transient_failure_is_noted_and_the_next_result_awaited(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")
    error = ErrorInfo("input_unavailable", "reading the input blob failed with HTTP 500")
    unavailable = failed_result(rid("a.csv", 1), "a.csv", error)
    deliveries = [FakeDelivery(unavailable.to_json()), ok("a.csv", 1, attempt=2)]
    world.inbox = FakeInbox(world.clock, [[deliveries[0]], [deliveries[1]]])
    code = run(["submit", *files, "--wait"], world.console(), world.adapters(), env={})
    assert code == 0, world.out.getvalue() + world.err.getvalue()
    assert (tmp_path / "a.scored.csv").read_bytes() == SCORED
    assert [d.settled for d in deliveries] == ["completed", "completed"]
    assert "the pipeline will try again" in world.out.getvalue() + world.err.getvalue()


def test_a_locally_rejected_file_is_not_uploaded_but_the_others_are(tmp_path: Path) -> None:
    world = World()
    good = make_files(tmp_path, "good.csv")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.jsonl").write_text("")
    args = ["submit", *good, str(tmp_path / "notes.txt"), str(tmp_path / "empty.jsonl"), "--json"]
    code = run(args, world.console(), world.adapters(), env={})
    assert code == 1
    assert [u[0] for u in world.store.uploads] == ["good.csv"]
    doc = json.loads(world.out.getvalue())
    by_blob = {f["blob"]: f for f in doc["files"]}
    assert by_blob["good.csv"]["status"] == "submitted" and by_blob["good.csv"]["request_id"] == rid("good.csv", 1)
    assert by_blob["notes.txt"]["status"] == "rejected"
    assert by_blob["notes.txt"]["error"]["code"] == "unsupported_format"
    assert by_blob["empty.jsonl"]["error"]["code"] == "empty_file"
    assert doc["exit_code"] == 1 and doc["waited"] is False


def test_timeout_exits_3_and_names_what_is_still_pending(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv", "b.csv")
    world.inbox = FakeInbox(world.clock, [[ok("a.csv", 1)]])
    code = run(["submit", *files, "--wait", "--timeout", "12"], world.console(), world.adapters(), env={})
    assert code == 3
    out = world.out.getvalue()
    assert "timed out after 12 s" in out
    assert f"asyncinfer status {rid('b.csv', 2)}" in out
    assert world.inbox.waits and max(world.inbox.waits) <= 5.0  # polls in short slices up to the deadline


def test_output_in_a_results_blob_is_downloaded_into_out_dir_and_checked(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv", "b.csv")
    big = SCORED * 3
    ref = OutputRef.inline(big, DataFormat.CSV, None)
    blob_ref = OutputRef(DataFormat.CSV, None, ref.size, ref.sha256, blob_url="http://results/a.csv")
    bad_ref = OutputRef(DataFormat.CSV, None, ref.size, ref.sha256, blob_url="http://results/b.csv")
    world.fetcher.blobs = {"http://results/a.csv": big, "http://results/b.csv": big[:-1]}
    messages = []
    for name, number, output in (("a.csv", 1, blob_ref), ("b.csv", 2, bad_ref)):
        result = succeeded(rid(name, number), name, output, rows_scored=6)
        messages.append(FakeDelivery(result.to_json()))
    world.inbox = FakeInbox(world.clock, [messages])
    code = run(["submit", *files, "--wait", "--out", str(tmp_path / "out")], world.console(), world.adapters(), env={})
    assert code == 1
    assert (tmp_path / "out" / "a.csv").read_bytes() == big
    assert not (tmp_path / "out" / "b.csv").exists() and not list((tmp_path / "out").glob("*.part"))
    assert f"output of {len(big) - 1} bytes does not match the result's size {len(big)}" in world.out.getvalue()


def test_a_staged_output_already_removed_by_the_writer_is_read_from_the_output_container(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")
    big = SCORED * 3
    ref = OutputRef.inline(big, DataFormat.CSV, None)
    gone = OutputRef(DataFormat.CSV, None, ref.size, ref.sha256, blob_url="http://results/gone/a.csv")
    world.fetcher.outputs = {"a.csv": big}  # the writer wrote the final output, then deleted the staged blob
    result = succeeded(rid("a.csv", 1), "a.csv", gone, rows_scored=6)
    world.inbox = FakeInbox(world.clock, [[FakeDelivery(result.to_json())]])
    code = run(["submit", *files, "--wait", "--out", str(tmp_path / "out")], world.console(), world.adapters(), env={})
    assert code == 0
    assert (tmp_path / "out" / "a.csv").read_bytes() == big


def test_foreign_and_malformed_messages_are_settled_without_derailing_the_run(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")
    junk = FakeDelivery(b'{"schema": "something-else"}')
    foreign = ok("other.csv", 9)
    mine = ok("a.csv", 1)
    world.inbox = FakeInbox(world.clock, [[junk, foreign], [mine]])
    code = run(["submit", *files, "--wait"], world.console(), world.adapters(), env={})
    assert code == 0
    assert (junk.settled, junk.reason) == ("dead-lettered", "contract_error")
    assert foreign.settled == "completed" and mine.settled == "completed"
    out = world.out.getvalue()
    assert "dead-lettered" in out and "not this run" in out


def test_a_stale_result_for_an_earlier_upload_of_the_same_name_is_not_taken(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")
    stale = failed_result("earlier-id", "a.csv", ErrorInfo("too_large", "an older version"))
    world.inbox = FakeInbox(world.clock, [[FakeDelivery(stale.to_json())], [ok("a.csv", 1)]])
    assert run(["submit", *files, "--wait", "--json"], world.console(), world.adapters(), env={}) == 0
    doc = json.loads(world.out.getvalue())
    assert doc["files"][0]["status"] == "succeeded" and doc["files"][0]["request_id"] == rid("a.csv", 1)
    assert doc["notes"] == ["ignored a result for request earlier-id (a.csv): not this run"]


def test_without_wait_it_uploads_prints_ids_and_never_opens_the_inbox(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")
    assert run(["submit", *files, "--prefix", "team/x"], world.console(), world.adapters(), env={}) == 0
    assert world.sessions == []
    assert world.store.uploads[0][0] == "team/x/a.csv"
    assert rid("team/x/a.csv", 1) in world.out.getvalue()


def test_json_output_is_one_document_with_outputs_and_row_errors(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")
    world.inbox = FakeInbox(world.clock, [[ok("a.csv", 1, rows_failed=1, row_errors=(RowError(2, "bad"),))]])
    assert (
        run(["submit", *files, "--wait", "--json", "--session", "s9"], world.console(), world.adapters(), env={}) == 0
    )
    doc = json.loads(world.out.getvalue())
    assert doc["session_id"] == "s9" and doc["exit_code"] == 0 and doc["error"] is None
    (entry,) = doc["files"]
    assert entry["status"] == "succeeded" and entry["output"] == str(tmp_path / "a.scored.csv")
    assert entry["rows_failed"] == 1 and entry["row_errors"] == [{"row": 2, "message": "bad"}]


def test_missing_file_and_bad_options_are_usage_errors(tmp_path: Path) -> None:
    world = World()
    for argv in (
        ["submit", str(tmp_path / "nope.csv")],
        ["submit", *make_files(tmp_path, "a.csv"), "--model", "Bad Model"],
        ["submit", str(tmp_path / "a.csv"), "--session", "has space"],
        ["submit", str(tmp_path / "a.csv"), "--timeout", "-1"],
        ["submit", str(tmp_path / "a.csv"), "--prefix", "a/../b"],
        ["submit", str(tmp_path / "a.csv"), "--prefix", "a//b"],
        ["submit", str(tmp_path / "a.csv"), "--prefix", "a\\b"],
        ["submit"],
        ["frobnicate"],
    ):
        world.err.truncate(0)
        assert run(argv, world.console(), world.adapters(), env={}) == 2, argv
        assert world.err.getvalue().count("\n") == 1 and "Traceback" not in world.err.getvalue()
    assert world.store.uploads == []


def test_two_files_with_one_blob_name_are_refused(tmp_path: Path) -> None:
    world = World()
    (tmp_path / "x").mkdir()
    a = make_files(tmp_path, "a.csv")
    (tmp_path / "x" / "a.csv").write_text(CSV)
    assert run(["submit", *a, str(tmp_path / "x" / "a.csv")], world.console(), world.adapters(), env={}) == 2
    assert "would both upload as 'a.csv'" in world.err.getvalue()


def test_config_error_exits_2_naming_the_setting(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")
    assert run(["submit", *files], world.console(), world.adapters(), env={"DataStorage": "garbage"}) == 2
    assert "setting DataStorage" in world.err.getvalue()


def test_service_error_during_upload_exits_1_with_one_line(tmp_path: Path) -> None:
    from client.errors import ServiceError

    world = World()
    world.store.fail_with = ServiceError("cannot upload to http://127.0.0.1:1 (storage from DataStorage): refused")
    files = make_files(tmp_path, "a.csv", "b.csv")
    assert run(["submit", *files, "--wait"], world.console(), world.adapters(), env={}) == 1
    out = world.out.getvalue()
    assert "a.csv: cannot upload to http://127.0.0.1:1 (storage from DataStorage): refused [upload_failed]" in out
    assert "1 upload_failed, 1 not_uploaded" in out
    assert world.err.getvalue() == ""  # said once, on the file's line
    assert world.sessions == []

    world = World()
    world.store.fail_with = ServiceError("storage down")
    assert run(["submit", *files, "--json"], world.console(), world.adapters(), env={}) == 1
    doc = json.loads(world.out.getvalue())
    assert doc["error"] == "storage down" and [f["status"] for f in doc["files"]] == ["upload_failed", "not_uploaded"]


def test_ctrl_c_while_waiting_still_reports_the_uploaded_requests(tmp_path: Path) -> None:
    world = World()
    files = make_files(tmp_path, "a.csv")

    class InterruptedInbox(FakeInbox):
        def receive(self, max_wait: float) -> list[ResultDelivery]:
            raise KeyboardInterrupt

    world.inbox = InterruptedInbox(world.clock)
    assert run(["submit", *files, "--wait"], world.console(), world.adapters(), env={}) == 130
    out = world.out.getvalue()
    assert "interrupted; still waiting for 1 file(s):" in out and f"asyncinfer status {rid('a.csv', 1)}" in out


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path: Path) -> None:
    files = make_files(tmp_path, "a.csv")
    world = World()
    world.store.fail_with = RuntimeError("disk on fire")
    assert run(["submit", *files], world.console(), world.adapters(), env={}) == 1
    assert world.err.getvalue() == "asyncinfer: error: RuntimeError: disk on fire (run with --debug for details)\n"

    world = World()
    world.store.fail_with = RuntimeError("disk on fire")
    with pytest.raises(RuntimeError, match="disk on fire"):
        run(["submit", *files, "--debug"], world.console(), world.adapters(), env={})
