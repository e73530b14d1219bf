"""The blob trigger's container listing against Azurite: the same names and ETags as the SDK's listing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devstack.functions_host.blob_listing import ContainerLister, bare_etag
from tests.fixtures.azurite import Azurite

# Names the one-expression page reader must hand over to ElementTree (escaped in the XML) or keep as they are.
TRICKY_NAMES = [
    "a&b.csv", "less<more>.csv", "quote\"and'apostrophe.csv", "ünïcødé/ファイル.csv", "space name.csv",
    "%41percent.csv", "semi;colon&amp;.csv", "deep/er/path/file.jsonl", "<Blob><Name>x</Name>.csv",
]  # fmt: skip


@pytest.fixture
def container(azurite: Azurite) -> Iterator[ContainerClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.create_container(f"listing-{uuid.uuid4().hex[:10]}")
        yield client
        client.delete_container()


def _sdk_listing(container: ContainerClient) -> list[tuple[str, str]]:
    return [(b.name, bare_etag(str(b.etag))) for b in container.list_blobs()]


def _listing(container: ContainerClient, page_size: int) -> list[tuple[str, str]]:
    lister = ContainerLister(container, page_size=page_size)
    try:
        return list(lister)
    finally:
        lister.close()


def test_many_pages_list_every_blob_once_in_order(container: ContainerClient) -> None:
    names = [f"batch-{i % 7}/{i:05d}.csv" for i in range(1203)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: container.upload_blob(n, b"x,y\n1,2\n"), names))
    listed = _listing(container, page_size=500)
    assert sorted(name for name, _ in listed) == sorted(names)
    assert listed == _sdk_listing(container)


@pytest.mark.parametrize("page_size", [2, 5000])
def test_escaped_names_come_back_as_uploaded(container: ContainerClient, page_size: int) -> None:
    plain = [f"plain-{i}.csv" for i in range(5)]
    for name in TRICKY_NAMES + plain:
        container.upload_blob(name, b"x\n1\n")
    listed = _listing(container, page_size=page_size)
    assert sorted(name for name, _ in listed) == sorted(TRICKY_NAMES + plain)
    assert listed == _sdk_listing(container)


def test_an_empty_container_lists_nothing(container: ContainerClient) -> None:
    assert _listing(container, page_size=500) == []
