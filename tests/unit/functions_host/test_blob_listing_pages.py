"""Reading List Blobs pages: the one-expression path and the ElementTree fallback agree."""

from __future__ import annotations

from devstack.functions_host.blob_listing import parse_dated_page, parse_page

HEAD = b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="input"><Blobs>'


def _blob(name: bytes, etag: bytes, encoded: bool = False) -> bytes:
    tag = b'<Name Encoded="true">' if encoded else b"<Name>"
    return (
        b"<Blob>" + tag + name + b"</Name><Properties><Creation-Time>Fri, 04 Dec 2026 15:25:09 GMT</Creation-Time>"
        b"<Etag>" + etag + b"</Etag><Content-Length>8</Content-Length></Properties></Blob>"
    )


def _page(*blobs: bytes, marker: bytes = b"") -> bytes:
    tail = b"<NextMarker>" + marker + b"</NextMarker>" if marker else b"<NextMarker/>"
    return HEAD + b"".join(blobs) + b"</Blobs>" + tail + b"</EnumerationResults>"


def test_plain_names_and_the_next_marker() -> None:
    page = _page(_blob(b"a/1.csv", b"0x1"), _blob("ü/2.csv".encode(), b'"0x2"'), marker=b"2!48!abc&amp;d")
    assert parse_page(page) == ([("a/1.csv", "0x1"), ("ü/2.csv", "0x2")], "2!48!abc&d")


def test_the_last_page_has_no_marker() -> None:
    assert parse_page(_page(_blob(b"a.csv", b"0x1"))) == ([("a.csv", "0x1")], "")
    assert parse_page(_page()) == ([], "")


def test_an_escaped_name_sends_the_page_to_elementtree() -> None:
    page = _page(_blob(b"a.csv", b"0x1"), _blob(b"b&amp;c&lt;d.csv", b"0x2"), marker=b"m&amp;1")
    assert parse_page(page) == ([("a.csv", "0x1"), ("b&c<d.csv", "0x2")], "m&1")


def test_an_encoded_name_is_not_skipped() -> None:
    page = _page(_blob(b"a.csv", b"0x1"), _blob(b"b%07.csv", b"0x2", encoded=True))
    assert parse_page(page) == ([("a.csv", "0x1"), ("b%07.csv", "0x2")], "")


def _dated(name: bytes, modified: bytes, etag: bytes) -> bytes:
    return (
        b"<Blob><Name>" + name + b"</Name><Properties><Creation-Time>Fri, 04 Dec 2026 15:25:09 GMT</Creation-Time>"
        b"<Last-Modified>" + modified + b"</Last-Modified><Etag>" + etag + b"</Etag></Properties></Blob>"
    )


def test_dated_pages_carry_last_modified_on_both_paths() -> None:
    fast = _page(_dated(b"a.csv", b"Sun, 06 Dec 2026 09:00:01 GMT", b"0x1"), marker=b"m")
    slow = _page(_dated(b"b&amp;c.csv", b"Sun, 06 Dec 2026 09:00:02 GMT", b"0x2"))
    (name, etag, modified), *_ = parse_dated_page(fast)[0]
    assert (name, etag, modified.isoformat() if modified else None) == ("a.csv", "0x1", "2026-12-06T09:00:01+00:00")
    assert parse_dated_page(fast)[1] == "m"
    (name, etag, modified), *_ = parse_dated_page(slow)[0]
    assert (name, etag, modified.isoformat() if modified else None) == ("b&c.csv", "0x2", "2026-12-06T09:00:02+00:00")
