"""Client settings: precedence (flag > env > settings file > local defaults) and readable errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.settings import LOCAL_SERVICEBUS, LOCAL_STORAGE, load_settings
from shared.config import SettingsError

AZURE_STORAGE = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net"
AZURE_SB = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc"


def test_defaults_point_at_the_local_stack() -> None:
    s = load_settings({}, env={})
    assert s.storage.connection_string == LOCAL_STORAGE
    assert s.servicebus.connection_string == LOCAL_SERVICEBUS
    assert "127.0.0.1:5673" in LOCAL_SERVICEBUS
    assert (s.input_container, s.result_topic, s.client_subscription) == ("input", "inference-results", "client")
    assert s.scoring_uri == "http://127.0.0.1:5001/score"
    assert s.functions_url == "http://127.0.0.1:7071"
    assert s.scoring_key is None and s.functions_key is None


def test_environment_uses_the_function_app_names() -> None:
    env = {
        "DataStorage": AZURE_STORAGE,
        "ServiceBus": AZURE_SB,
        "INPUT_CONTAINER": "in2",
        "RESULT_TOPIC": "results2",
        "CLIENT_SUBSCRIPTION": "me",
        "SCORING_URI": "https://ep.westeurope.inference.ml.azure.com/score",
        "SCORING_KEY": "k",
        "FUNCTIONS_URL": "https://app.azurewebsites.net/",
        "FUNCTIONS_KEY": "fk",
        "MAX_INPUT_BYTES": "100",
    }
    s = load_settings({}, env=env)
    assert s.storage.connection_string == AZURE_STORAGE and s.storage.source == "DataStorage"
    assert s.servicebus.connection_string == AZURE_SB
    assert (s.input_container, s.result_topic, s.client_subscription) == ("in2", "results2", "me")
    assert s.scoring_key == "k" and s.functions_key == "fk"
    assert s.functions_url == "https://app.azurewebsites.net"  # trailing slash dropped
    assert s.max_input_bytes == 100


def test_flags_win_over_environment_and_file_over_defaults(tmp_path: Path) -> None:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"INPUT_CONTAINER": "from-file", "RESULT_TOPIC": "t-file"}})
    )
    s = load_settings(
        {"INPUT_CONTAINER": "from-flag", "RESULT_TOPIC": None},
        env={"INPUT_CONTAINER": "from-env"},
        settings_file=settings_file,
    )
    assert s.input_container == "from-flag"
    assert s.result_topic == "t-file"


def test_identity_style_settings_select_the_credential_path() -> None:
    env = {
        "DataStorage__blobServiceUri": "https://acct.blob.core.windows.net",
        "ServiceBus__fullyQualifiedNamespace": "ns.servicebus.windows.net",
    }
    s = load_settings({}, env=env)
    assert s.storage.connection_string is None and s.storage.account_url == "https://acct.blob.core.windows.net"
    assert s.storage.source == "DataStorage__blobServiceUri"
    assert s.servicebus.connection_string is None and s.servicebus.namespace == "ns.servicebus.windows.net"


def test_flag_may_give_an_account_url_or_namespace_instead_of_a_connection_string() -> None:
    s = load_settings(
        {"DataStorage": "https://acct.blob.core.windows.net/", "ServiceBus": "sb://ns.example.net/"}, env={}
    )
    assert s.storage.account_url == "https://acct.blob.core.windows.net"
    assert s.servicebus.namespace == "ns.example.net"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DataStorage": "not a connection string"}, "DataStorage"),
        ({"ServiceBus": "Endpoint=http://x;SharedAccessKeyName=a;SharedAccessKey=b"}, "ServiceBus"),
        ({"ServiceBus": "Endpoint=sb://x"}, "ServiceBus"),
        (
            {"ServiceBus__fullyQualifiedNamespace": "Endpoint=sb://x;SharedAccessKey=y"},
            "ServiceBus__fullyQualifiedNamespace",
        ),
        ({"SCORING_URI": "127.0.0.1:5001/score"}, "SCORING_URI"),
        ({"FUNCTIONS_URL": "ftp://host"}, "FUNCTIONS_URL"),
        ({"MAX_INPUT_BYTES": "lots"}, "MAX_INPUT_BYTES"),
        ({"MAX_INPUT_BYTES": "0"}, "MAX_INPUT_BYTES"),
        ({"INPUT_CONTAINER": "a/b"}, "INPUT_CONTAINER"),
    ],
)
def test_bad_values_fail_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=f"setting {named}"):
        load_settings({}, env=env)


def test_bad_flag_value_says_it_came_from_the_command_line() -> None:
    with pytest.raises(SettingsError, match=r"setting DataStorage \(command line\)"):
        load_settings({"DataStorage": "nonsense"}, env={})


def test_unreadable_settings_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "local.settings.json"
    bad.write_text("{not json")
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_settings({}, env={}, settings_file=bad)
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings({}, env={}, settings_file=tmp_path / "missing.json")
