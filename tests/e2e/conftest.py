"""Fixtures shared by the end-to-end tests that use the session's local stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from tests.fixtures.stack import StackEndpoints


@pytest.fixture(scope="module")
def blobs(stack: StackEndpoints) -> Iterator[BlobServiceClient]:
    """A blob client for the stack's Azurite account."""
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as service:
        yield service
