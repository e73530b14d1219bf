"""Reading blob writes from Azurite's access log: which requests count, the version a line names, and following a
log that grows, ends mid-line, is truncated or replaced."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.functions_host import access_log
from devstack.functions_host.access_log import AccessLogFollower, BlobWrite, blob_write

ACCOUNT = "/devstoreaccount1"
MODIFIED = "Sun, 06 Dec 2026 09:00:00 GMT"
AT = datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)


def line(method: str, url: str, status: int) -> str:
    """A line in morgan's plain ``common`` format (Azurite run without the local stack's wrapper)."""
    return f'127.0.0.1 - - [06/Dec/2026:09:00:00 +0000] "{method} {url} HTTP/1.1" {status} -'


def versioned(method: str, url: str, status: int, etag: str = r"\"0x8D1A\"", modified: str = MODIFIED) -> str:
    """A line as ``azurite_redacted.js`` writes it: ``common`` + the answer's ETag (quotes escaped by morgan) and
    Last-Modified."""
    return f'{line(method, url, status)} {etag} "{modified}"'


@pytest.mark.parametrize(
    ("method", "url", "status", "expected"),
    [
        ("PUT", "/devstoreaccount1/input/a.csv", 201, ("input", "a.csv")),  # Put Blob, Put Blob From URL
        ("PUT", "/devstoreaccount1/input/a.csv?sv=2024&sig=x", 202, ("input", "a.csv")),  # Copy Blob (From URL)
        ("PUT", "/devstoreaccount1/input/dir/b%20c%C3%BC.csv?comp=blocklist", 201, ("input", "dir/b cü.csv")),
        ("PUT", "/devstoreaccount1/input/a.csv?comp=block&blockid=AAA", 201, None),  # Put Block: nothing committed
        ("PUT", "/devstoreaccount1/input/a.csv?comp=metadata", 200, None),
        ("PUT", "/devstoreaccount1/input/a.csv?comp=appendblock", 201, None),
        ("PUT", "/devstoreaccount1/input/a.csv?comp=page", 201, None),
        ("PUT", "/devstoreaccount1/input/a.csv?comp=snapshot", 201, None),
        ("PUT", "/devstoreaccount1/input/a.csv?comp=tier", 202, None),
        ("PUT", "/devstoreaccount1/input/a.csv", 412, None),  # a failed conditional write
        ("PUT", "/devstoreaccount1/input/a.csv", 409, None),
        ("GET", "/devstoreaccount1/input/a.csv", 200, None),
        ("DELETE", "/devstoreaccount1/input/a.csv", 202, None),
        ("PUT", "/devstoreaccount1/input?restype=container", 201, None),  # Create Container (or a queue)
        ("POST", "/devstoreaccount1/input/messages", 201, None),  # Put Message on a queue named like the container
        ("PUT", "/otheraccount/input/a.csv", 201, None),
    ],
)
def test_only_committed_creates_and_replaces_count(method: str, url: str, status: int, expected: object) -> None:
    write = blob_write(line(method, url, status), ACCOUNT)
    assert (write and (write.container, write.name)) == expected
    if write is not None:
        assert write.etag is None and write.last_modified is None  # the trigger reads the properties then
    versioned_write = blob_write(versioned(method, url, status), ACCOUNT)
    assert (versioned_write and (versioned_write.container, versioned_write.name)) == expected


def test_a_line_with_the_answers_etag_names_the_version_written() -> None:
    write = blob_write(versioned("PUT", "/devstoreaccount1/input/a%20b.csv", 201), ACCOUNT)
    assert write == BlobWrite("input", "a b.csv", '"0x8D1A"', AT)
    blocks = blob_write(versioned("PUT", "/devstoreaccount1/input/b.csv?comp=blocklist", 201, etag='"0x8D1B"'), ACCOUNT)
    assert blocks == BlobWrite("input", "b.csv", '"0x8D1B"', AT)  # a morgan that does not escape quotes


@pytest.mark.parametrize(("etag", "modified"), [("-", MODIFIED), (r"\"0x8D1A\"", "-"), (r"\"0x8D1A\"", "Sunday")])
def test_a_write_without_a_usable_version_is_still_a_write(etag: str, modified: str) -> None:
    write = blob_write(versioned("PUT", "/devstoreaccount1/input/a.csv", 201, etag, modified), ACCOUNT)
    assert write == BlobWrite("input", "a.csv")


def test_not_an_access_line() -> None:
    assert blob_write("Azurite Blob service is successfully listening at http://127.0.0.1:10000", ACCOUNT) is None


def names(follower: AccessLogFollower) -> list[tuple[str, str]]:
    return [(write.container, write.name) for write in follower.new_blobs()]


def append(path: Path, *lines: str, end: str = "\n") -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write("\n".join(lines) + end)


def test_follows_from_the_end_watched_containers_only_and_keeps_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "azurite.log"
    append(log, line("PUT", "/devstoreaccount1/input/before.csv", 201))
    follower = AccessLogFollower(log, ACCOUNT, ["input"])
    assert follower.available()
    assert follower.new_blobs() == []  # what was there before the follower started is the first listing's

    append(
        log,
        line("PUT", "/devstoreaccount1/input/a.csv", 201),
        line("PUT", "/devstoreaccount1/output/a.csv", 201),
        line("PUT", "/devstoreaccount1/input/a.csv?comp=blocklist", 201),
    )
    half = line("PUT", "/devstoreaccount1/input/b.csv", 201)
    append(log, half[:20], end="")
    assert names(follower) == [("input", "a.csv")]
    append(log, half[20:])
    assert names(follower) == [("input", "b.csv")]
    assert follower.new_blobs() == []


def test_truncated_or_replaced_log_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "azurite.log"
    append(log, *[line("PUT", f"/devstoreaccount1/input/old-{i}.csv", 201) for i in range(20)])
    follower = AccessLogFollower(log, ACCOUNT, ["input"])

    log.write_text(line("PUT", "/devstoreaccount1/input/after-truncate.csv", 201) + "\n")
    assert names(follower) == [("input", "after-truncate.csv")]

    rotated = tmp_path / "azurite.log.1"
    os.rename(log, rotated)
    assert follower.new_blobs() == []
    assert not follower.available()
    append(log, line("PUT", "/devstoreaccount1/input/new-file.csv", 201))
    assert names(follower) == [("input", "new-file.csv")]


def test_a_missing_log_is_not_available_until_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    follower = AccessLogFollower(log, ACCOUNT, ["input"])
    assert not follower.available()
    assert follower.new_blobs() == []
    append(log, line("PUT", "/devstoreaccount1/input/first.csv", 201))
    assert names(follower) == [("input", "first.csv")]


def test_a_restart_of_azurite_in_the_log_is_reported_once(tmp_path: Path) -> None:
    log = tmp_path / "azurite.log"
    append(log, "Azurite Blob service is starting at http://127.0.0.1:10000")
    follower = AccessLogFollower(log, ACCOUNT, ["input"])
    assert follower.new_blobs() == [] and not follower.restarted()  # the start before the follower is not news

    append(log, line("PUT", "/devstoreaccount1/input/a.csv", 201))
    assert names(follower) == [("input", "a.csv")] and not follower.restarted()
    append(log, "Azurite Blob service is starting at http://127.0.0.1:10000",
           "Azurite Blob service is successfully listening at http://127.0.0.1:10000")  # fmt: skip
    assert follower.new_blobs() == []
    assert follower.restarted()
    assert not follower.restarted()


def test_the_last_write_of_a_blob_counts_and_a_blob_deleted_after_it_is_left_out(tmp_path: Path) -> None:
    log = tmp_path / "azurite.log"
    follower = AccessLogFollower(log, ACCOUNT, ["input"])
    append(
        log,
        versioned("PUT", "/devstoreaccount1/input/a.csv", 201, etag=r"\"0x1\""),
        versioned("PUT", "/devstoreaccount1/input/b.csv", 201, etag=r"\"0x2\""),
        versioned("PUT", "/devstoreaccount1/input/a.csv", 201, etag=r"\"0x3\""),
        versioned("PUT", "/devstoreaccount1/input/gone.csv", 201),
        line("DELETE", "/devstoreaccount1/input/gone.csv", 202),
        versioned("PUT", "/devstoreaccount1/input/b.csv", 201, etag=r"\"0x4\""),
        line("DELETE", "/devstoreaccount1/input/b.csv?snapshot=2026-12-06T09:00:00.0000000Z", 202),  # b stays
        line("DELETE", "/devstoreaccount1/input/b.csv", 404),
    )
    assert [(w.name, w.etag) for w in follower.new_blobs()] == [("a.csv", '"0x3"'), ("b.csv", '"0x4"')]
    append(
        log,
        line("DELETE", "/devstoreaccount1/input/a.csv", 202),
        versioned("PUT", "/devstoreaccount1/input/a.csv", 201),
    )
    assert [(w.name, w.etag) for w in follower.new_blobs()] == [("a.csv", '"0x8D1A"')]  # deleted, then written again


def waited(follower: AccessLogFollower, timeout: float) -> float:
    started = time.monotonic()
    follower.wait(timeout)
    return time.monotonic() - started


def test_wait_returns_as_soon_as_the_log_is_written_to_and_after_a_replaced_log_too(tmp_path: Path) -> None:
    log = tmp_path / "azurite.log"
    append(log, line("PUT", "/devstoreaccount1/input/before.csv", 201))
    follower = AccessLogFollower(log, ACCOUNT, ["input"])
    try:
        assert waited(follower, 0.05) >= 0.04  # nothing written: the timeout
        append(log, line("PUT", "/devstoreaccount1/input/a.csv", 201))
        assert waited(follower, 30) < 10  # written since the last wait: at once
        assert names(follower) == [("input", "a.csv")]

        os.rename(log, tmp_path / "azurite.log.1")
        append(log, line("PUT", "/devstoreaccount1/input/b.csv", 201))
        follower.wait(0.05)  # the new file is watched from here on; what it holds is read below in any case
        assert names(follower) == [("input", "b.csv")]
        append(log, line("PUT", "/devstoreaccount1/input/c.csv", 201))
        assert waited(follower, 30) < 10
        assert names(follower) == [("input", "c.csv")]
    finally:
        follower.close()


def test_without_inotify_wait_is_a_pause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_log, "INotify", None)
    log = tmp_path / "azurite.log"
    follower = AccessLogFollower(log, ACCOUNT, ["input"])
    append(log, line("PUT", "/devstoreaccount1/input/a.csv", 201))
    assert waited(follower, 0.05) >= 0.04
    assert names(follower) == [("input", "a.csv")]
