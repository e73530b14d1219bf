"""Settings: defaults, both connection styles, model routes, and failing fast with the setting's name."""

from __future__ import annotations

import pytest

from shared.settings import SettingsError, load_settings, parse_model_routes

from .fakes import BASE_ENV, make_settings


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
    assert s.data_storage.uses_identity and s.data_storage.endpoint == "https://acct.blob.core.windows.net"
    assert s.data_storage.client_id == "11111111-2222-3333-4444-555555555555"
    assert s.service_bus.endpoint == "ns.servicebus.windows.net" and s.service_bus.client_id is None


@pytest.mark.parametrize(
    ("drop", "named"),
    [("DataStorage", "DataStorage__blobServiceUri"), ("ServiceBus", "ServiceBus__fullyQualifiedNamespace"),
     ("SCORING_URI", "SCORING_URI")],
)  # fmt: skip
def test_missing_setting_is_named(drop: str, named: str) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != drop}
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


@pytest.mark.parametrize(
    ("key", "value"),
    [("MAX_INPUT_BYTES", "lots"), ("MAX_RESUBMITS", "-1"), ("SCORING_URI", "ftp://x"),
     ("BLOB_TRIGGER_SOURCE", "Polling"), ("MODEL_ROUTES", "churn-v2"), ("SCORING_RETRY_MAX_SECONDS", "0")],
)  # fmt: skip
def test_invalid_setting_is_named(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings({**BASE_ENV, key: value})


def test_extra_route_reads_its_own_endpoint_settings_and_falls_back_to_the_default() -> None:
    s = make_settings(MODEL_ROUTES="churn-v2=scoring-churn-v2, churn-v3=scoring-churn-v3")
    v2, v3 = s.route("churn-v2"), s.route("churn-v3")
    assert v2 is not None and v3 is not None
    assert (v2.subscription, v2.uri, v2.key, v2.deployment) == (
        "scoring-churn-v2", "http://127.0.0.1:5002/score", "secret", "blue")  # fmt: skip
    assert (v3.uri, v3.deployment) == ("http://127.0.0.1:5001/score", None)
    assert v2.function_suffix == "churn_v2"


def test_model_routes_reject_duplicates_and_the_default_model() -> None:
    assert parse_model_routes(" a=s1 ,b=s2,") == (("a", "s1"), ("b", "s2"))
    for bad in ("a=s1,a=s2", "churn=scoring", "=s", "A B=s"):
        with pytest.raises(SettingsError, match="MODEL_ROUTES"):
            parse_model_routes(bad)
