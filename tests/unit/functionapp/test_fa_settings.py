"""Settings: defaults, both connection styles, model routes, endpoints read apart, failing fast by name."""

from __future__ import annotations

import pytest

from shared.config import SettingsError
from shared.settings import load_endpoint, load_settings, parse_model_routes

from .fakes import BASE_ENV, make_settings

UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/scoring-uri/)"


def test_defaults_and_connection_strings() -> None:
    s = make_settings()
    assert s.data_storage.connection_string == "UseDevelopmentStorage=true"
    assert not s.data_storage.uses_identity
    assert (s.input_container, s.output_container, s.ledger_container) == ("input", "output", "ledger")
    assert (s.request_topic, s.result_topic) == ("inference-requests", "inference-results")
    assert s.max_input_bytes == 1000
    assert s.models == ("churn", "churn-v2")


def test_identity_style_connections() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k not in ("DataStorage", "ServiceBus")}
    env |= {
        "DataStorage__blobServiceUri": "https://acct.blob.core.windows.net",
        "DataStorage__clientId": "11111111-2222-3333-4444-555555555555",
        "ServiceBus__fullyQualifiedNamespace": "ns.servicebus.windows.net",
    }
    s = load_settings(env)
    assert s.data_storage.uses_identity and s.data_storage.service_uri == "https://acct.blob.core.windows.net"
    assert s.data_storage.client_id == "11111111-2222-3333-4444-555555555555"
    assert s.service_bus.fully_qualified_namespace == "ns.servicebus.windows.net" and s.service_bus.client_id is None


@pytest.mark.parametrize(
    ("drop", "named"),
    [("DataStorage", "DataStorage__blobServiceUri"), ("ServiceBus", "ServiceBus__fullyQualifiedNamespace")],
)
def test_missing_setting_is_named(drop: str, named: str) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != drop}
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_a_connection_of_the_wrong_kind_is_named() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "DataStorage"}
    with pytest.raises(SettingsError, match="DataStorage__blobServiceUri is required"):
        load_settings({**env, "DataStorage__fullyQualifiedNamespace": "ns.servicebus.windows.net"})


@pytest.mark.parametrize(
    ("key", "value"),
    [("MAX_INPUT_BYTES", "lots"), ("MAX_RESUBMITS", "-1"), ("BLOB_TRIGGER_SOURCE", "Polling"),
     ("MODEL_ROUTES", "churn-v2"), ("SCORING_RETRY_MAX_SECONDS", "0"), ("DataStorage", UNRESOLVED)],
)  # fmt: skip
def test_invalid_setting_is_named(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings({**BASE_ENV, key: value})


def test_app_settings_do_not_need_the_endpoint() -> None:
    """The blob trigger, the writer and the status route load these; a missing endpoint must not break them."""
    without = {k: v for k, v in BASE_ENV.items() if not k.startswith(("SCORING_URI", "SCORING_KEY"))}
    assert load_settings(without).models == ("churn", "churn-v2")
    assert load_settings({**BASE_ENV, "SCORING_URI": UNRESOLVED, "SCORING_KEY": UNRESOLVED}).models[0] == "churn"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [("SCORING_URI", None, "SCORING_URI is required"), ("SCORING_URI", "ftp://x", "SCORING_URI must be an http"),
     ("SCORING_URI", UNRESOLVED, "SCORING_URI is an unresolved Key Vault reference"),
     ("SCORING_KEY", UNRESOLVED, "SCORING_KEY is an unresolved Key Vault reference"),
     ("SCORING_READ_TIMEOUT_SECONDS", "0", "SCORING_READ_TIMEOUT_SECONDS must be > 0")],
)  # fmt: skip
def test_endpoint_settings_fail_by_name(key: str, value: str | None, problem: str) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != key} | ({key: value} if value is not None else {})
    with pytest.raises(SettingsError, match=problem):
        load_endpoint(env, "churn")


def test_extra_route_reads_its_own_endpoint_settings_and_falls_back_to_the_default() -> None:
    env = {**BASE_ENV, "MODEL_ROUTES": "churn-v2=scoring-churn-v2, churn-v3=scoring-churn-v3"}
    s = load_settings(env)
    v2, v3 = s.route("churn-v2"), s.route("churn-v3")
    assert v2 is not None and v3 is not None
    assert v2.subscription == "scoring-churn-v2" and v2.function_suffix == "churn_v2"
    e2, e3 = load_endpoint(env, "churn-v2"), load_endpoint(env, "churn-v3")
    assert (e2.uri, e2.key, e2.deployment) == ("http://127.0.0.1:5002/score", "secret", "blue")
    assert (e3.uri, e3.deployment) == ("http://127.0.0.1:5001/score", None)
    assert (e3.connect_timeout_seconds, e3.read_timeout_seconds) == (5.0, 30.0)
    # A route with its own URI works while the default endpoint is not deployed yet.
    assert load_endpoint({**env, "SCORING_URI": UNRESOLVED, "SCORING_KEY": ""}, "churn-v2").uri.endswith(":5002/score")


def test_model_routes_reject_duplicates_and_the_default_model() -> None:
    assert parse_model_routes(" a=s1 ,b=s2,") == (("a", "s1"), ("b", "s2"))
    for bad in ("a=s1,a=s2", "churn=scoring", "=s", "A B=s"):
        with pytest.raises(SettingsError, match="MODEL_ROUTES"):
            parse_model_routes(bad)
