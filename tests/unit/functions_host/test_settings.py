"""App settings: local.settings.json loading, precedence, %SETTING% expressions and connection resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.functions_host.settings import (
    SettingsError,
    apply_to_environment,
    load_local_settings,
    resolve_binding,
    resolve_connection,
    resolve_expression,
)


def test_environment_wins_over_local_settings() -> None:
    env = {"A": "from-env"}
    skipped = apply_to_environment({"A": "from-file", "B": "file-only"}, env)
    assert env == {"A": "from-env", "B": "file-only"}
    assert skipped == ["A"]


def test_local_file_then_example_then_nothing(tmp_path: Path) -> None:
    assert load_local_settings(tmp_path) == {}
    (tmp_path / "local.settings.json.example").write_text(json.dumps({"Values": {"X": "example", "N": 5}}))
    assert load_local_settings(tmp_path) == {"X": "example", "N": "5"}
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"X": "local"}}))
    assert load_local_settings(tmp_path) == {"X": "local"}
    (tmp_path / "local.settings.json").write_text("{not json")
    with pytest.raises(SettingsError, match=r"local\.settings\.json is not valid JSON"):
        load_local_settings(tmp_path)


def test_expressions_resolve_or_name_the_missing_setting() -> None:
    env = {"TOPIC": "inference-requests", "SUB": "scoring"}
    assert resolve_expression("%TOPIC%", env, "x") == "inference-requests"
    assert resolve_expression("%TOPIC%/%SUB%", env, "x") == "inference-requests/scoring"
    assert resolve_expression("plain", env, "x") == "plain"
    binding = {"name": "msg", "type": "serviceBusTrigger", "topicName": "%TOPIC%", "subscriptionName": "%NOPE%"}
    with pytest.raises(SettingsError) as caught:
        resolve_binding(binding, env, "score_request")
    assert "function 'score_request'" in str(caught.value)
    assert "'subscriptionName'" in str(caught.value)
    assert "'NOPE'" in str(caught.value)
    resolved = resolve_binding({**binding, "subscriptionName": "%SUB%", "isSessionsEnabled": True}, env, "f")
    assert resolved["topicName"] == "inference-requests"
    assert resolved["subscriptionName"] == "scoring"
    assert resolved["isSessionsEnabled"] is True


def test_connection_string_and_prefixed_name() -> None:
    assert (
        resolve_connection("ServiceBus", {"ServiceBus": "Endpoint=sb://x"}, "f").connection_string == "Endpoint=sb://x"
    )
    prefixed = resolve_connection("Storage", {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "f")
    assert prefixed.connection_string == "UseDevelopmentStorage=true"


def test_identity_style_connections() -> None:
    bus = resolve_connection("ServiceBus", {"ServiceBus__fullyQualifiedNamespace": "ns.servicebus.windows.net"}, "f")
    assert bus.uses_identity
    assert bus.fully_qualified_namespace == "ns.servicebus.windows.net"
    data = resolve_connection(
        "DataStorage",
        {
            "DataStorage__blobServiceUri": "https://acct.blob.core.windows.net",
            "DataStorage__credential": "managedidentity",
            "DataStorage__clientId": "1234",
        },
        "f",
    )
    assert (data.service_uri, data.credential, data.client_id) == (
        "https://acct.blob.core.windows.net",
        "managedidentity",
        "1234",
    )
    host = resolve_connection("AzureWebJobsStorage", {"AzureWebJobsStorage__accountName": "acct"}, "f")
    assert host.service_uri == "https://acct.blob.core.windows.net"
    assert host.queue_service_uri == "https://acct.queue.core.windows.net"


def test_missing_connection_names_the_function_and_settings() -> None:
    with pytest.raises(SettingsError) as caught:
        resolve_connection("ServiceBus", {}, "function 'submit_blob', binding 'out'")
    text = str(caught.value)
    assert "submit_blob" in text
    assert "ServiceBus__fullyQualifiedNamespace" in text
