"""Blob writes read from Azurite's access log, so the blob trigger finds new blobs without listing the container.

Azurite 3.x has no change feed, no storage analytics logs (``$logs``) and no Event Grid, but when it runs without
``--silent`` it writes one line per request to its standard output in morgan's ``common`` format, once the answer
is sent. The local stack runs it through ``devstack/azurite_redacted.js``, which adds the answer's ETag and
Last-Modified to that format (morgan escapes the ETag's quotes)::

    127.0.0.1 - - [06/Dec/2026:09:00:00 +0000] "PUT /devstoreaccount1/input/a.csv HTTP/1.1" 201 - \\"0x8D1\\" "Sun,
    06 Dec 2026 09:00:00 GMT"

(one line, wrapped here).

:class:`AccessLogFollower` reads such a log from the offset it last reached (a ``stat`` and, when the log grew,
one read of the new bytes: nothing is asked of the storage service) and returns the blobs that a successful
create-or-replace wrote into the watched containers: the REST calls after which Event Grid reports
``Microsoft.Storage.BlobCreated`` (Put Blob, Put Block List, Copy Blob) and Put Blob From URL / Copy Blob From URL,
each with the ETag and Last-Modified of the version it wrote when the line has them (a plain ``common`` line
has not: the trigger then reads the blob's properties). A blob written and then deleted within the lines read at
once is left out. A log that shrinks or is replaced (rotated, recreated) is read again from its start. Lines are
only hints: a slow full listing catches whatever a log never showed. :meth:`AccessLogFollower.wait` returns as
soon as the log is written to (inotify, through ``inotify_simple``, on Linux), so a new blob is seen within a
millisecond or so of Azurite logging it, and an idle log costs no more than a poll now and then.

The follower also reports when Azurite started again (its start-up line in the same log): Azurite keeps its
metadata in memory and saves it every few seconds, so after a ``kill -9`` it comes back from an earlier state, and
what the trigger remembers of blobs it has done (their receipts) may no longer be true. Azure Storage never goes
back in time; this exists for the local stack only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

try:
    from inotify_simple import INotify, flags
except ImportError:  # not Linux (inotify is Linux's), or installed without it: the log is polled
    INotify = None

logger = logging.getLogger(__name__)

# morgan "common": remote - user [date] "METHOD URL HTTP/x.y" status length
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<url>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')
# what azurite_redacted.js adds after the length: ETag (quotes escaped) and "Last-Modified", "-" for none
_VERSION = re.compile(r'\S+ (?P<etag>\S+) "(?P<modified>[^"]*)"')
_ESCAPED = re.compile(r"\\(.)")
_MAX_READ = 8 * 1024 * 1024  # bytes read per poll, so a huge backlog is taken in steps
STARTED = "Azurite Blob service is starting"  # Azurite's first line of a (re)start
# (comp query parameter, status) of the PUTs that create or replace a whole blob: Put Blob and Put Blob From URL
# (201), Copy Blob and Copy Blob From URL (202), Put Block List (201). Put Block, Append Block, Put Page,
# metadata, properties, tier and snapshots change no blob's committed content, or (snapshots) make no new name.
_BLOB_WRITES = frozenset({("", "201"), ("", "202"), ("blocklist", "201")})
_DELETED = ("", "202")  # Delete Blob (comp, status)
_NOT_THE_BLOB = ("snapshot=", "versionid=")  # a delete of one snapshot or version only leaves the blob


@dataclass(frozen=True)
class BlobWrite:
    """A create-or-replace the log showed; ``etag`` (quoted, as the service sends it) and ``last_modified`` are
    those of the version written, None when the line does not carry them."""

    container: str
    name: str
    etag: str | None = None
    last_modified: datetime | None = None


def blob_write(line: str, account_path: str) -> BlobWrite | None:
    """The write when ``line`` logs a successful create-or-replace of a blob in the account served under
    ``account_path`` (e.g. ``/devstoreaccount1``); else None."""
    match = ACCESS_LINE.search(line)
    if match is None or match["method"] != "PUT":
        return None
    found = _blob_request(match, account_path)
    if found is None or found[2] not in _BLOB_WRITES:
        return None
    container, blob, _ = found
    version = _VERSION.match(line, match.end())
    if version is None:
        return BlobWrite(container, blob)
    etag = _ESCAPED.sub(r"\1", version["etag"])
    try:
        modified: datetime | None = parsedate_to_datetime(version["modified"])
    except (TypeError, ValueError):
        modified = None
    if etag == "-" or modified is None:
        return BlobWrite(container, blob)
    return BlobWrite(container, blob, etag, modified)


def blob_deleted(line: str, account_path: str) -> tuple[str, str] | None:
    """``(container, blob name)`` when ``line`` logs a successful Delete Blob in that account; else None."""
    match = ACCESS_LINE.search(line)
    if match is None or match["method"] != "DELETE":
        return None
    found = _blob_request(match, account_path)
    if found is None or found[2] != _DELETED or any(q in match["url"].lower() for q in _NOT_THE_BLOB):
        return None
    return found[0], found[1]


def _blob_request(match: re.Match[str], account_path: str) -> tuple[str, str, tuple[str, str]] | None:
    """Container, blob name and (comp, status) of a logged request on a blob of the account."""
    url = urlsplit(match["url"])
    prefix = account_path.rstrip("/") + "/"
    if not url.path.startswith(prefix):
        return None
    container, slash, blob = url.path[len(prefix) :].partition("/")
    if not slash or not blob:
        return None  # a container-level request (queues and tables write to the same log)
    comp = parse_qs(url.query).get("comp", [""])[0]
    return unquote(container), unquote(blob), (comp, match["status"])


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
        self._inotify: Any = None  # made on the first wait
        self._watched: tuple[int, int] | None = None  # (inode, watch descriptor) of the file watched
        try:
            status = os.stat(path)
            self._inode, self._offset = status.st_ino, status.st_size
        except FileNotFoundError:
            pass

    def available(self) -> bool:
        """Whether the log exists (when it does not, the trigger lists the container as if it had none)."""
        return self.path.exists()

    def new_blobs(self) -> list[BlobWrite]:
        """Each blob written since the last call, in log order, once (with its last write's version); a blob
        deleted after its last write is left out."""
        found: dict[tuple[str, str], BlobWrite] = {}
        for raw in self._new_lines():
            line = raw.decode("utf-8", "replace")
            if STARTED in line:
                self._restarted = True
            write = blob_write(line, self.account_path)
            if write is not None and write.container in self.containers:
                found.pop((write.container, write.name), None)  # the version written last, in its place
                found[write.container, write.name] = write
            elif (deleted := blob_deleted(line, self.account_path)) is not None:
                found.pop(deleted, None)
        return list(found.values())

    def wait(self, timeout: float) -> None:
        """Returns as soon as the log is written to, or after ``timeout`` seconds (at once when it was written to
        since the last wait). Without inotify, or while the log does not exist, it waits ``timeout``."""
        if not self._watch():
            time.sleep(timeout)
            return
        self._inotify.read(timeout=max(1, round(timeout * 1000)))

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify, self._watched = None, None

    def _watch(self) -> bool:
        """Watches the file now at the log's path for writes (again when it was replaced); False if it cannot."""
        if INotify is None:
            return False
        try:
            if self._inotify is None:
                self._inotify = INotify()
            inode = os.stat(self.path).st_ino
            if self._watched is None or self._watched[0] != inode:
                if self._watched is not None:
                    with contextlib.suppress(OSError):  # the kernel drops the watch of a deleted file itself
                        self._inotify.rm_watch(self._watched[1])
                self._watched = (inode, self._inotify.add_watch(self.path, flags.MODIFY))
        except OSError:
            self._watched = None
            return False
        return True

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
