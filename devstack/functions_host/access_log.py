"""Blob writes read from Azurite's access log, so the blob trigger finds new blobs without listing the container.

Azurite 3.x has no change feed, no storage analytics logs (``$logs``) and no Event Grid, but when it runs without
``--silent`` it writes one line per request to its standard output in morgan's ``common`` format, once the answer
is sent::

    127.0.0.1 - - [06/Dec/2026:09:00:00 +0000] "PUT /devstoreaccount1/input/a%20b.csv HTTP/1.1" 201 -

:class:`AccessLogFollower` reads such a log from the offset it last reached (a ``stat`` and, when the log grew,
one read of the new bytes: nothing is asked of the storage service) and returns the blobs that a successful
create-or-replace wrote into the watched containers: the REST calls after which Event Grid reports
``Microsoft.Storage.BlobCreated`` (Put Blob, Put Block List, Copy Blob) and Put Blob From URL / Copy Blob From URL.
A log that shrinks or is replaced (rotated, recreated) is read again from its start. Lines are only hints: the
trigger reads the blob's properties itself, and a slow full listing catches whatever a log never showed.

The follower also reports when Azurite started again (its start-up line in the same log): Azurite keeps its
metadata in memory and saves it every few seconds, so after a ``kill -9`` it comes back from an earlier state, and
what the trigger remembers of blobs it has done (their receipts) may no longer be true. Azure Storage never goes
back in time; this exists for the local stack only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

# morgan "common": remote - user [date] "METHOD URL HTTP/x.y" status length
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<url>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')
_MAX_READ = 8 * 1024 * 1024  # bytes read per poll, so a huge backlog is taken in steps
STARTED = "Azurite Blob service is starting"  # Azurite's first line of a (re)start
# (comp query parameter, status) of the PUTs that create or replace a whole blob: Put Blob and Put Blob From URL
# (201), Copy Blob and Copy Blob From URL (202), Put Block List (201). Put Block, Append Block, Put Page,
# metadata, properties, tier and snapshots change no blob's committed content, or (snapshots) make no new name.
_BLOB_WRITES = frozenset({("", "201"), ("", "202"), ("blocklist", "201")})


def blob_write(line: str, account_path: str) -> tuple[str, str] | None:
    """``(container, blob name)`` when ``line`` logs a successful create-or-replace of a blob in the account
    served under ``account_path`` (e.g. ``/devstoreaccount1``); else None."""
    match = ACCESS_LINE.search(line)
    if match is None or match["method"] != "PUT":
        return None
    url = urlsplit(match["url"])
    prefix = account_path.rstrip("/") + "/"
    if not url.path.startswith(prefix):
        return None
    container, slash, blob = url.path[len(prefix) :].partition("/")
    if not slash or not blob:
        return None  # a container-level request (queues and tables write to the same log)
    comp = parse_qs(url.query).get("comp", [""])[0]
    if (comp, match["status"]) not in _BLOB_WRITES:
        return None
    return unquote(container), unquote(blob)


class AccessLogFollower:
    """Follows one access log from where it ends when created; owned by one thread."""

    def __init__(self, path: Path, account_path: str, containers: Collection[str]) -> None:
        self.path = path
        self.account_path = account_path
        self.containers = frozenset(containers)
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""
        self._restarted = False
        try:
            status = os.stat(path)
            self._inode, self._offset = status.st_ino, status.st_size
        except FileNotFoundError:
            pass

    def available(self) -> bool:
        """Whether the log exists (when it does not, the trigger lists the container as if it had none)."""
        return self.path.exists()

    def new_blobs(self) -> list[tuple[str, str]]:
        """``(container, name)`` of each blob written since the last call, in log order, duplicates kept once."""
        found: dict[tuple[str, str], None] = {}
        for raw in self._new_lines():
            line = raw.decode("utf-8", "replace")
            if STARTED in line:
                self._restarted = True
            write = blob_write(line, self.account_path)
            if write is not None and write[0] in self.containers:
                found[write] = None
        return list(found)

    def restarted(self) -> bool:
        """Whether the log showed Azurite starting again since the last call."""
        restarted, self._restarted = self._restarted, False
        return restarted

    def _new_lines(self) -> list[bytes]:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return []
        if status.st_ino != self._inode or status.st_size < self._offset:
            if self._inode is not None:
                logger.info("access log %s was replaced or truncated; reading it from the start", self.path)
            self._inode, self._offset, self._partial = status.st_ino, 0, b""
        if status.st_size == self._offset:
            return []
        with self.path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read(min(_MAX_READ, status.st_size - self._offset))
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        return lines
