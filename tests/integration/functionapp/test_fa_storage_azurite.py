"""Blob adapter and ledger against Azurite: conditional writes, listing, read-only SAS, copy, concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from shared.contracts import DataFormat, InferenceRequest, RequestState
from shared.ledger import Ledger, LedgerRecord, submitted
from shared.ports import BlobNotFound, PreconditionFailed
from shared.settings import get_settings
from shared.storage import AzureBlobStore

from .conftest import AppEnv


def store() -> AzureBlobStore:
    return AzureBlobStore(get_settings().data_storage)


def test_conditional_writes_and_reads(fa_env: AppEnv) -> None:
    blobs = store()
    etag = blobs.write(fa_env.ledger, "x.json", b"1", content_type="application/json", if_none_match_any=True)
    with pytest.raises(PreconditionFailed):
        blobs.write(fa_env.ledger, "x.json", b"2", content_type="application/json", if_none_match_any=True)
    new = blobs.write(fa_env.ledger, "x.json", b"3", content_type="application/json", if_match=etag)
    with pytest.raises(PreconditionFailed):
        blobs.write(fa_env.ledger, "x.json", b"4", content_type="application/json", if_match=etag)
    assert blobs.read(fa_env.ledger, "x.json") == (b"3", new)
    with pytest.raises(BlobNotFound):
        blobs.read(fa_env.ledger, "missing.json")
    with pytest.raises(BlobNotFound):
        blobs.properties(fa_env.ledger, "missing.json")
    with pytest.raises(PreconditionFailed):
        blobs.delete(fa_env.ledger, "x.json", if_match=etag)
    blobs.delete(fa_env.ledger, "x.json", if_match=new)
    with pytest.raises(BlobNotFound):
        blobs.read(fa_env.ledger, "x.json")
    # A write against the ETag of a blob that is gone fails its condition, as the fakes answer.
    with pytest.raises(PreconditionFailed):
        blobs.write(fa_env.ledger, "x.json", b"5", content_type="application/json", if_match=new)


def test_set_metadata_is_conditional_and_keeps_the_content(fa_env: AppEnv) -> None:
    blobs = store()
    etag = blobs.write(fa_env.ledger, "m.json", b"body", content_type="application/json", metadata={"a": "1"})
    new = blobs.set_metadata(fa_env.ledger, "m.json", {"b": "2"}, if_match=etag)
    with pytest.raises(PreconditionFailed):
        blobs.set_metadata(fa_env.ledger, "m.json", {"c": "3"}, if_match=etag)
    with pytest.raises((BlobNotFound, PreconditionFailed)):  # Azurite answers 412 for a missing blob
        blobs.set_metadata(fa_env.ledger, "missing.json", {"c": "3"}, if_match=etag)
    info = blobs.properties(fa_env.ledger, "m.json")
    assert (info.etag, info.metadata, blobs.read(fa_env.ledger, "m.json")[0]) == (new, {"b": "2"}, b"body")


def test_peek_gives_the_properties_and_a_small_blobs_content_in_one_read(fa_env: AppEnv) -> None:
    blobs = store()
    small = blobs.write(fa_env.ledger, "small.csv", b"a,b\n1,2\n", content_type="text/csv", metadata={"k": "v"})
    big = blobs.write(fa_env.ledger, "big.csv", b"x" * 5000, content_type="text/csv")
    empty = blobs.write(fa_env.ledger, "empty.csv", b"", content_type="text/csv")
    info, content = blobs.peek(fa_env.ledger, "small.csv", 4096)
    assert (info.etag, info.size, info.metadata, content) == (small, 8, {"k": "v"}, b"a,b\n1,2\n")
    assert info.url == blobs.url(fa_env.ledger, "small.csv")
    assert blobs.peek(fa_env.ledger, "small.csv", 8)[1] == b"a,b\n1,2\n"  # exactly the limit is still whole
    info, content = blobs.peek(fa_env.ledger, "big.csv", 4096)
    assert (info.etag, info.size, content) == (big, 5000, None)  # the size is the blob's, not the range's
    info, content = blobs.peek(fa_env.ledger, "empty.csv", 4096)  # storage refuses a range of an empty blob
    assert (info.etag, info.size, content) == (empty, 0, b"")
    with pytest.raises(BlobNotFound):
        blobs.peek(fa_env.ledger, "missing.csv", 4096)


def test_listing_carries_metadata(fa_env: AppEnv) -> None:
    blobs = store()
    blobs.write(fa_env.ledger, "inflight/a", b"", content_type="x/y", metadata={"attempt": "2"})
    blobs.write(fa_env.ledger, "other/b", b"", content_type="x/y")
    [info] = list(blobs.list(fa_env.ledger, "inflight/"))
    assert (info.name, info.metadata, info.size) == ("inflight/a", {"attempt": "2"}, 0)


def test_read_sas_url_is_read_only_and_short_lived(fa_env: AppEnv) -> None:
    fa_env.upload("d/a b.csv", b"x,y\n1,2\n")
    url = store().read_sas_url(fa_env.input, "d/a b.csv", timedelta(minutes=7))
    query = parse_qs(urlparse(url).query)
    assert query["sp"] == ["r"]
    expiry = datetime.fromisoformat(query["se"][0].replace("Z", "+00:00"))
    assert timedelta(minutes=6) < expiry - datetime.now(UTC) <= timedelta(minutes=7)
    assert requests.get(url, timeout=10).content == b"x,y\n1,2\n"
    put = requests.put(url, data=b"evil", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert put.status_code == 403
    assert fa_env.read(fa_env.input, "d/a b.csv") == b"x,y\n1,2\n"


def test_copy_from_url_with_and_without_sas(fa_env: AppEnv) -> None:
    blobs = store()
    fa_env.blob_service.create_container(fa_env.input + "-res")
    data = bytes(range(256)) * 4000
    source = fa_env.blob_service.get_blob_client(fa_env.input + "-res", "r/1/a.csv")
    source.upload_blob(data)
    blobs.copy_from_url(source.url, fa_env.output, "a.csv", content_type="text/csv", metadata={"sha256": "s"})
    sas_url = blobs.read_sas_url(fa_env.input + "-res", "r/1/a.csv", timedelta(minutes=5))
    blobs.copy_from_url(sas_url, fa_env.output, "b.csv", content_type="text/csv", metadata={"sha256": "s"})
    for name in ("a.csv", "b.csv"):
        assert fa_env.read(fa_env.output, name) == data
        info = blobs.properties(fa_env.output, name)
        assert info.metadata == {"sha256": "s"}
    props = fa_env.blob_service.get_blob_client(fa_env.output, "a.csv").get_blob_properties()
    assert props.content_settings.content_type == "text/csv"
    with pytest.raises(BlobNotFound):
        blobs.copy_from_url(source.url + "-missing", fa_env.output, "c.csv", content_type="text/csv", metadata={})
    elsewhere = source.url.replace("127.0.0.1", "localhost", 1)  # the same bytes, named by another host
    assert elsewhere != source.url
    with pytest.raises(ValueError, match="not a blob of this storage account"):
        blobs.copy_from_url(elsewhere, fa_env.output, "d.csv", content_type="text/csv", metadata={})
    assert fa_env.names(fa_env.output) == ["a.csv", "b.csv"]


def test_concurrent_ledger_updates_are_not_lost(fa_env: AppEnv) -> None:
    request = InferenceRequest(request_id="c" * 32, container="input", blob_name="a.csv", blob_url="u", etag="e",
                               size=1, format=DataFormat.CSV, compression=None, session_id="s", model="churn",
                               submitted_at="t")  # fmt: skip
    now = datetime.now(UTC)
    Ledger(store(), fa_env.ledger).advance(request.request_id, submitted(request, now), now=now)

    def bump(current: LedgerRecord | None) -> LedgerRecord | None:
        assert current is not None
        return LedgerRecord(**{**current.__dict__, "scoring_retries": current.scoring_retries + 1})

    def worker() -> None:
        ledger = Ledger(store(), fa_env.ledger)  # a client per thread, as in the worker's thread pool
        for _ in range(5):
            ledger.advance(request.request_id, bump, now=now)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = Ledger(store(), fa_env.ledger).get(request.request_id)
    assert record is not None and record.scoring_retries == 30 and record.state == RequestState.SUBMITTED
