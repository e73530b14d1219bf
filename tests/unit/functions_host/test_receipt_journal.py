"""The blob receipt journal an EventGrid-source trigger keeps in the host's data directory: attempts and final
states across reopening, a last line cut short, compaction, reopening versions storage may have lost, a second
process kept off, and many worker threads at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devstack.functions_host.receipt_journal import CLAIMED, DONE, POISONED, JournalInUse, ReceiptJournal

A, B = ("a.csv", "0x8D1A"), ("b.csv", "0x8D1B")


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()]


def test_attempts_and_final_states_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReceiptJournal(path)
    assert journal.claim(A) == 1
    assert journal.claim(A) == 2  # a failed (or killed) call counted: the next is attempt 2
    journal.settle(A, 2, DONE)
    assert journal.claim(A) is None
    assert journal.claim(B) == 1
    journal.settle(B, 1, POISONED)
    journal_id = journal.journal_id
    journal.close()

    again = ReceiptJournal(path)
    assert again.journal_id == journal_id
    assert (again.final(A), again.final(B)) == (True, True)
    assert again.claim(A) is None and again.claim(B) is None
    entry = again.entry(A)
    assert entry is not None and (entry.attempts, entry.state) == (2, DONE)
    assert again.seq == 5
    with pytest.raises(ValueError):
        again.settle(A, 3, CLAIMED)
    again.close()


def test_a_last_line_cut_short_is_cut_off_and_the_journal_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReceiptJournal(path)
    journal.claim(A)
    journal.settle(A, 1, DONE)
    journal.claim(B)
    journal.close()
    # kill -9 in the middle of writing B's done line
    with path.open("ab") as file:
        file.write(b'{"seq":4,"blob":"b.csv","etag":"0x8D1B","attem')

    again = ReceiptJournal(path)
    assert again.final(A)
    entry = again.entry(B)
    assert entry is not None and (entry.attempts, entry.state) == (1, CLAIMED)  # claimed, not done: runs again
    again.settle(B, 2, DONE)
    again.close()
    assert all(isinstance(line, dict) for line in lines(path))  # every line parses: the torn one is gone
    third = ReceiptJournal(path)
    assert third.final(B)
    third.close()


def test_a_line_that_does_not_parse_in_the_middle_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReceiptJournal(path)
    journal.claim(A)
    journal.close()
    with path.open("ab") as file:
        file.write(b"not json\n")
    journal = ReceiptJournal(path)
    journal.settle(A, 1, DONE)
    journal.close()
    assert ReceiptJournal(path).final(A)


def test_compaction_keeps_one_line_per_version_and_every_state(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReceiptJournal(path, compact_min_lines=20)
    for i in range(30):
        key = (f"f{i:02d}.csv", f"0x{i:02X}")
        journal.claim(key)
        journal.claim(key)  # a retry: three lines for this version
        if i % 3:
            journal.settle(key, 2, DONE)
    seq = journal.seq
    journal.close()
    written = lines(path)
    # compacted along the way: far fewer lines than the 80 written, the header first, each version once
    assert len(written) < 60
    assert "journal" in written[0]
    names = [line["blob"] for line in written[1:]]
    assert len(names) == len(set(names))

    again = ReceiptJournal(path)
    assert len(again) == 30
    assert again.seq == seq  # line numbers go on from where they were
    for i in range(30):
        entry = again.entry((f"f{i:02d}.csv", f"0x{i:02X}"))
        assert entry is not None
        assert (entry.attempts, entry.state) == ((2, DONE) if i % 3 else (2, CLAIMED))
    again.close()


def test_versions_settled_after_a_line_are_reopened_without_their_last_attempt(tmp_path: Path) -> None:
    journal = ReceiptJournal(tmp_path / "j.jsonl")
    journal.claim(A)
    journal.settle(A, 1, DONE)
    covered = journal.seq
    journal.claim(B)
    journal.settle(B, 1, DONE)
    assert journal.reopen_after(covered) == [B]
    assert journal.final(A) and not journal.final(B)
    assert journal.claim(B) == 1  # the attempt whose work storage may have lost is done again, not counted twice
    assert journal.reopen_after(covered) == []  # claimed is not final: nothing more to reopen
    journal.close()


def test_a_second_process_cannot_use_the_same_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReceiptJournal(path)
    code = (
        "import sys; from pathlib import Path\n"
        "from devstack.functions_host.receipt_journal import JournalInUse, ReceiptJournal\n"
        "try:\n    ReceiptJournal(Path(sys.argv[1]))\nexcept JournalInUse as exc:\n    print(exc); sys.exit(3)\n"
    )
    held = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert held.returncode == 3, held.stderr
    assert "in use by another host process" in held.stdout
    journal.close()
    free = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert free.returncode == 0, free.stderr + free.stdout
    assert issubclass(JournalInUse, OSError)  # the host's start fails with status 2 on OSError


def test_worker_threads_claim_and_settle_at_once_without_losing_a_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = ReceiptJournal(path, compact_min_lines=50)  # compactions happen while the threads write
    threads, per_thread = 8, 200
    attempts: list[list[int | None]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            key = (f"t{t}/{i}.csv", "0x1")
            shared = ("shared.csv", f"0x{i}")  # every thread claims the same versions too
            attempts[t].append(journal.claim(shared))
            assert journal.claim(key) == 1
            journal.settle(key, 1, DONE)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    journal.close()
    # each shared version was claimed once by each thread: attempts 1..8, each handed out exactly once
    for i in range(per_thread):
        assert sorted(a[i] for a in attempts) == list(range(1, threads + 1))  # type: ignore[type-var]

    again = ReceiptJournal(path)
    assert len(again) == threads * per_thread + per_thread
    assert all(again.final((f"t{t}/{i}.csv", "0x1")) for t in range(threads) for i in range(per_thread))
    assert all(again.entry(("shared.csv", f"0x{i}")).attempts == threads for i in range(per_thread))  # type: ignore[union-attr]
    assert again.seq == threads * per_thread * 3
    again.close()
