"""The blob trigger's SDK-type argument: built by the extension's own converter from the host's reference, and
handed out again for the same reference while it is among the most recent ones."""

from __future__ import annotations

import azurefunctions.extensions.bindings.blob as blob_types
import pytest
from azure.storage.blob import BlobClient

from devstack.functions_host.blob_binding import SdkTypeArguments, reference

CONNECTION = "DataStorage"


@pytest.fixture(autouse=True)
def connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONNECTION, "UseDevelopmentStorage=true")


def client(arguments: SdkTypeArguments, name: str) -> BlobClient:
    made = arguments.argument("submit_blob", "client", "blobTrigger", blob_types.BlobClient,
                              reference(CONNECTION, "input", name))  # fmt: skip
    assert isinstance(made, BlobClient)
    return made


def test_the_argument_is_the_extensions_blob_client_for_the_reference() -> None:
    made = client(SdkTypeArguments(), "dir/a.csv")
    assert (made.container_name, made.blob_name) == ("input", "dir/a.csv")


def test_only_the_most_recently_used_arguments_are_kept() -> None:
    arguments = SdkTypeArguments(kept=2)
    a, b = client(arguments, "a.csv"), client(arguments, "b.csv")
    assert client(arguments, "a.csv") is a  # handed out again, and now the most recent
    client(arguments, "c.csv")  # a third: the least recently used one (b) is let go
    assert client(arguments, "a.csv") is a
    assert client(arguments, "b.csv") is not b
