"""The one settings reader and its SettingsError, shared by the function app, scoring service, client and host."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Connection, SettingsError, SettingsReader

UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/scoring-key/)"


def test_every_component_raises_the_same_settings_error(tmp_path: Path) -> None:
    from client.settings import load_settings as client_settings
    from devstack.functions_host.settings import load_local_settings
    from scoring.service.settings import ScoringSettings
    from shared.settings import load_settings as app_settings

    (tmp_path / "local.settings.json").write_text("{not json")
    failures = [
        lambda: app_settings({}),
        lambda: ScoringSettings.from_env({}),
        lambda: client_settings({}, env={"MAX_INPUT_BYTES": "lots"}),
        lambda: load_local_settings(tmp_path),
    ]
    for fail in failures:
        with pytest.raises(SettingsError) as caught:
            fail()
        assert type(caught.value) is SettingsError


def test_typed_reads_and_defaults() -> None:
    read = SettingsReader({"N": " 7 ", "F": "0.5", "U": "https://x/score", "C": "b", "BLANK": "  "})
    assert read.optional("BLANK") is None and read.optional("MISSING") is None
    assert read.text("BLANK", "default") == "default"
    assert (read.integer("N", 1), read.integer("MISSING", 3)) == (7, 3)
    assert (read.number("F", 1.0), read.url("U"), read.choice("C", ("a", "b")), read.choice("MISSING", ("a", "b")))\
        == (0.5, "https://x/score", "b", "a")  # fmt: skip


@pytest.mark.parametrize(
    ("values", "read", "message"),
    [({}, lambda r: r.text("X"), "setting X is required"),
     ({"X": "many"}, lambda r: r.integer("X", 1), "setting X must be an integer, got 'many'"),
     ({"X": "-1"}, lambda r: r.integer("X", 1, minimum=0), "setting X must be >= 0, got -1"),
     ({"X": "0"}, lambda r: r.number("X", 1.0), "setting X must be > 0"),
     ({"X": "nan"}, lambda r: r.number("X", 1.0), "setting X must be > 0"),
     ({"X": "ftp://h"}, lambda r: r.url("X"), "setting X must be an http"),
     ({"X": "c"}, lambda r: r.choice("X", ("a", "b")), "setting X must be one of a, b, got 'c'"),
     ({"X": UNRESOLVED}, lambda r: r.optional("X"), "setting X is an unresolved Key Vault reference"),
     ({"X": UNRESOLVED}, lambda r: r.text("X", "default"), "setting X is an unresolved Key Vault reference")],
)  # fmt: skip
def test_errors_name_the_setting(values: dict[str, str], read: object, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        read(SettingsReader(values))  # type: ignore[operator]


def test_placeholders_are_refused_only_where_asked_and_labels_say_where_a_value_came_from() -> None:
    values = {"TOPIC": "<your topic>"}
    assert SettingsReader(values).text("TOPIC") == "<your topic>"
    with pytest.raises(SettingsError, match=r"setting TOPIC \(command line\) still holds a template placeholder"):
        SettingsReader(values, lambda name: f"{name} (command line)", placeholders=False).text("TOPIC")


def test_connections_follow_the_functions_runtime() -> None:
    read = SettingsReader({"Bus": "Endpoint=sb://x", "AzureWebJobsLegacy": "UseDevelopmentStorage=true"})
    assert read.connection("Bus") == Connection("Bus", connection_string="Endpoint=sb://x")
    assert read.connection("Legacy").connection_string == "UseDevelopmentStorage=true"
    identity = SettingsReader(
        {
            "Data:blobServiceUri": "https://a.blob.core.windows.net",
            "Data__clientId": "id",
            "Acct__accountName": "a",
            "Sb__fullyQualifiedNamespace": "ns.servicebus.windows.net",
        }
    )
    data = identity.blob_connection("Data")
    assert data.uses_identity and (data.service_uri, data.client_id) == ("https://a.blob.core.windows.net", "id")
    account = identity.connection("Acct")
    assert (account.service_uri, account.queue_service_uri) == (
        "https://a.blob.core.windows.net", "https://a.queue.core.windows.net")  # fmt: skip
    assert identity.servicebus_connection("Sb").fully_qualified_namespace == "ns.servicebus.windows.net"
    with pytest.raises(SettingsError, match="Sb__blobServiceUri is required"):
        identity.blob_connection("Sb")
    with pytest.raises(SettingsError, match="Data__fullyQualifiedNamespace is required"):
        identity.servicebus_connection("Data")
    with pytest.raises(
        SettingsError, match="set setting Nope to a connection string, or Nope__fullyQualifiedNamespace"
    ):
        identity.connection("Nope")
    with pytest.raises(SettingsError, match="setting Bus is an unresolved Key Vault reference"):
        SettingsReader({"Bus": UNRESOLVED}).connection("Bus")
