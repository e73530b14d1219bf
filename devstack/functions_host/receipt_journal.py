"""What a blob trigger remembers of each blob version, kept by the host in a file of its own: an append-only
journal of JSON lines in the host's data directory (beside ``host.key``).

The first line names the journal (a random id, kept when the file is compacted); each later line is one change of
one version's state, numbered (``seq``) in the order written::

    {"journal": "5f0c..."}
    {"seq": 1, "blob": "a.csv", "etag": "0x8DE...", "attempts": 1, "state": "claimed"}
    {"seq": 2, "blob": "a.csv", "etag": "0x8DE...", "attempts": 1, "state": "done"}

``claimed`` is written before each call (a failed or killed call leaves it: the version runs again with one attempt
more), ``done`` and ``poisoned`` after the last one. A line is written with one ``write`` on a file opened for
appending, without ``fsync``: it survives a ``kill -9`` of the host (the kernel has it), not a power cut. Loading
reads every complete line; a last line without its newline (a write cut short) is cut off, and any other line that
does not parse is skipped with a warning. When the file holds half again as many lines as versions it is
rewritten with one line per version (to a temporary file, then renamed over it). An exclusive ``flock`` on
``<journal>.lock`` keeps a second host process off the same journal. One lock guards the state for the blob
worker threads.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Version = tuple[str, str]  # blob name, ETag without quotes
CLAIMED, DONE, POISONED = "claimed", "done", "poisoned"
FINAL = (DONE, POISONED)
_STATES = (CLAIMED, *FINAL)
COMPACT_MIN_LINES = 1000


class JournalInUse(OSError):
    """Another process holds the journal."""


@dataclass(frozen=True)
class Entry:
    attempts: int
    state: str
    seq: int  # of the line that last changed it

    @property
    def final(self) -> bool:
        return self.state in FINAL


class ReceiptJournal:
    def __init__(self, path: Path, compact_min_lines: int = COMPACT_MIN_LINES) -> None:
        self.path = path
        self._compact_min_lines = compact_min_lines
        self._lock = threading.Lock()
        self._entries: dict[Version, Entry] = {}
        self._seq = 0
        self._lines = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise JournalInUse(f"blob receipt journal {path} is in use by another host process") from None
        self.journal_id = self._load()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if self._lines == 0:
            self._write({"journal": self.journal_id})

    @property
    def seq(self) -> int:
        """The number of the last line written."""
        with self._lock:
            return self._seq

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def entry(self, key: Version) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def final(self, key: Version) -> bool:
        """Whether the version is done or poisoned."""
        with self._lock:
            entry = self._entries.get(key)
        return entry is not None and entry.final

    def claim(self, key: Version) -> int | None:
        """Records a call about to start and returns its attempt number; None when the version is done or poisoned."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.final:
                return None
            attempt = (entry.attempts if entry else 0) + 1
            self._append(key, attempt, CLAIMED)
            return attempt

    def settle(self, key: Version, attempt: int, state: str) -> None:
        """Records a version done or poisoned after its call ``attempt``."""
        if state not in FINAL:
            raise ValueError(f"a version is settled as {' or '.join(FINAL)}, not {state!r}")
        with self._lock:
            self._append(key, attempt, state)

    def reopen_after(self, seq: int) -> list[Version]:
        """Versions done or poisoned by a line after ``seq`` become claimed again, their last attempt not counted
        (what that attempt did may be lost): they run again. Returns them."""
        with self._lock:
            reopened = [key for key, entry in self._entries.items() if entry.final and entry.seq > seq]
            for key in reopened:
                self._append(key, self._entries[key].attempts - 1, CLAIMED)
            return reopened

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    # -- file -------------------------------------------------------------------------------------------------
    def _load(self) -> str:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return uuid.uuid4().hex
        journal_id: str | None = None
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            logger.warning("blob receipt journal %s: cutting off a last line written only in part (%d bytes)",
                           self.path, len(data) - complete)  # fmt: skip
            with self.path.open("r+b") as file:
                file.truncate(complete)
        for number, raw in enumerate(data[:complete].splitlines(), start=1):
            try:
                line = json.loads(raw)
                if "journal" in line:
                    journal_id = journal_id or str(line["journal"])
                else:
                    self._apply(line)
                self._lines += 1
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("blob receipt journal %s: line %d skipped: %s", self.path, number, exc)
        return journal_id or uuid.uuid4().hex

    def _apply(self, line: dict[str, Any]) -> None:
        state = str(line["state"])
        if state not in _STATES:
            raise ValueError(f"unknown state {state!r}")
        seq = int(line["seq"])
        self._entries[str(line["blob"]), str(line["etag"])] = Entry(int(line["attempts"]), state, seq)
        self._seq = max(self._seq, seq)

    def _append(self, key: Version, attempts: int, state: str) -> None:
        """Writes one line; the caller holds the lock."""
        self._seq += 1
        self._entries[key] = Entry(attempts, state, self._seq)
        self._write({"seq": self._seq, "blob": key[0], "etag": key[1], "attempts": attempts, "state": state})
        if self._lines >= self._compact_min_lines and self._lines * 2 > len(self._entries) * 3:
            self._compact()

    def _write(self, line: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(line, separators=(",", ":")) + "\n").encode())
        self._lines += 1

    def _compact(self) -> None:
        """Rewrites the journal with one line per version; the caller holds the lock."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        lines = [{"journal": self.journal_id}] + [
            {"seq": e.seq, "blob": key[0], "etag": key[1], "attempts": e.attempts, "state": e.state}
            for key, e in sorted(self._entries.items(), key=lambda item: item[1].seq)
        ]
        with temporary.open("wb") as file:
            file.write(b"".join((json.dumps(line, separators=(",", ":")) + "\n").encode() for line in lines))
            file.flush()
            os.fsync(file.fileno())  # renamed over the journal only once complete, even after a power cut
        os.replace(temporary, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._lines = len(lines)
        logger.info("blob receipt journal %s compacted to %d versions", self.path, len(self._entries))


__all__ = ["CLAIMED", "DONE", "POISONED", "Entry", "JournalInUse", "ReceiptJournal", "Version"]
