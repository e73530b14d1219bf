"""Outputs seen as Azurite writes them, from its access log, for the pipeline benchmark.

The benchmark measures drop -> output written. Finding outputs by listing the output container cost Azurite CPU,
which the stack under test shares (2,414 List Blobs in a paced run of 200 files), and added up to one listing
interval to each latency measured. Azurite logs each request as it sends the answer (morgan, see
``devstack/functions_host/access_log.py``), so following that log sees the write of an output or an error record
within :data:`LOG_POLL_SECONDS` of its answer, and asks the storage service nothing. Listings remain the fallback
(every :data:`LISTING_SECONDS` for what is still missing, in case a line was never read: a name found that way is
timed by the listing and counted apart) and the confirmation at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

from devstack.functions_host.access_log import AccessLogFollower
from tests.support.flow import OUTPUT, OutputWatcher

LOG_POLL_SECONDS = 0.01  # a stat of the log, and a read when it grew
LISTING_SECONDS = 2.0  # how often a listing looks for what the log has not shown, while waiting


class LoggedOutputs:
    """Feeds an :class:`OutputWatcher`'s history from the access log, from where the log ends when this is made;
    used by one thread at a time."""

    def __init__(self, log: Path, account_path: str, watcher: OutputWatcher, prefixes: Iterable[str]) -> None:
        """``watcher`` watches the names (and lists ``prefixes`` of the output container for them, perhaps only the
        groups of names still missing); ``prefixes`` are listed whole for the confirmation."""
        self._follower = AccessLogFollower(log, account_path, [OUTPUT])
        self._watcher = watcher
        self._prefixes = list(prefixes)
        self.from_log = 0  # outcomes first seen in the log
        self.from_listing: list[str] = []  # names whose outcome only a listing found

    def read(self) -> None:
        """Takes the writes of outputs and error records logged since the last call."""
        writes = self._follower.new_blobs()
        now = time.monotonic()  # after the read: each line was written at most one poll before
        for write in writes:
            if self._watcher.saw(write.name, now):
                self.from_log += 1

    def follow_while(self, running: threading.Event) -> None:
        """Reads the log every :data:`LOG_POLL_SECONDS` while ``running`` is set (for a thread of its own)."""
        while running.is_set():
            self.read()
            time.sleep(LOG_POLL_SECONDS)

    def wait(self, names: Iterable[str], timeout: float) -> list[str]:
        """Follows the log until every name has an outcome or ``timeout`` passes, listing what is still missing
        every :data:`LISTING_SECONDS`; returns the names still missing after a last listing."""
        wanted = list(names)
        deadline = time.monotonic() + timeout
        next_listing = time.monotonic() + LISTING_SECONDS
        while True:
            self.read()
            missing = self._watcher.outcomes.missing(wanted)
            if not missing:
                return []
            now = time.monotonic()
            if now >= next_listing or now > deadline:
                self._watcher.poll()
                still = self._watcher.outcomes.missing(wanted)
                self.from_listing += [n for n in missing if n not in still]
                if not still or now > deadline:
                    return still
                next_listing = now + LISTING_SECONDS
            time.sleep(LOG_POLL_SECONDS)

    def unconfirmed(self, names: Iterable[str]) -> list[str]:
        """Names with an outcome seen that a listing of the whole prefixes now does not show (none unless a write
        was undone)."""
        names = list(names)
        seen = self._watcher.outcomes
        current = OutputWatcher(self._watcher.container, names, self._prefixes).current()
        return [
            n
            for n in names
            if (n in seen.outputs or n in seen.errors) and n not in current.outputs and n not in current.errors
        ]
