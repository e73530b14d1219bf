"""Settings: defaults, both connection styles, model routes, endpoints read apart, failing fast by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.config import SettingsError
from shared.routes import RoutesError, parse_routes
from shared.settings import load_endpoint, load_settings
from tests.unit.infra.bicep_model import REPO, function_app_settings

from .fakes import BASE_ENV, make_settings

UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/scoring-uri/)"


def test_defaults_and_connection_strings() -> None:
    s = make_settings()
    assert s.data_storage.connection_string == "UseDevelopmentStorage=true"
    assert not s.data_storage.uses_identity
    assert (s.input_container, s.output_container, s.ledger_container) == ("input", "output", "ledger")
    assert (s.request_topic, s.result_topic) == ("inference-requests", "inference-results")
    assert s.max_input_bytes == 1000
    assert s.models == ("default", "churn-v2")


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
     ("MODEL_ROUTES_FILE", "/nonexistent/models.json"), ("SCORING_RETRY_MAX_SECONDS", "0"),
     ("DataStorage", UNRESOLVED), ("RECONCILE_CHECK_OUTPUTS", "yes")],
)  # fmt: skip
def test_invalid_setting_is_named(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings({**BASE_ENV, key: value})


def test_app_settings_do_not_need_the_endpoint() -> None:
    """The blob trigger, the writer and the status route load these; a missing endpoint must not break them."""
    without = {k: v for k, v in BASE_ENV.items() if not k.startswith(("SCORING_URI", "SCORING_KEY"))}
    assert load_settings(without).models == ("default", "churn-v2")
    assert load_settings({**BASE_ENV, "SCORING_URI": UNRESOLVED, "SCORING_KEY": UNRESOLVED}).models[0] == "default"


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
        load_endpoint(env, "default")


def test_each_route_reads_its_own_endpoint_settings_and_falls_back_to_the_default() -> None:
    env = {**BASE_ENV, "SCORING_DEPLOYMENT__DEFAULT": "default"}
    s = load_settings(env)
    default, v2 = s.route("default"), s.route("churn-v2")
    assert default is not None and v2 is not None
    assert s.routes[0] is default, "the default route comes first: files without model metadata use it"
    assert v2.subscription == "scoring-churn-v2" and v2.setting_suffix == "CHURN_V2"
    assert default.subscription == "scoring"
    e2, e1 = load_endpoint(env, "churn-v2"), load_endpoint(env, "default")
    assert (e2.uri, e2.key, e2.deployment) == ("http://127.0.0.1:5002/score", "secret", "blue")
    assert (e1.uri, e1.deployment) == ("http://127.0.0.1:5001/score", "default")
    assert load_endpoint({**env, "SCORING_DEPLOYMENT__CHURN_V2": ""}, "churn-v2").deployment is None
    assert (e1.connect_timeout_seconds, e1.read_timeout_seconds) == (5.0, 30.0)
    # A route with its own URI works while the default endpoint is not deployed yet.
    assert load_endpoint({**env, "SCORING_URI": UNRESOLVED, "SCORING_KEY": ""}, "churn-v2").uri.endswith(":5002/score")


def test_the_repository_declares_the_default_route() -> None:
    s = load_settings({k: v for k, v in BASE_ENV.items() if k != "MODEL_ROUTES_FILE"})
    assert s.models[0] == "default"


@pytest.mark.parametrize(
    ("document", "message"),
    [({}, "non-empty list"), ({"routes": []}, "non-empty list"),
     ({"routes": [{"model": "x1y", "subscription": "s"}]}, "'default' is required"),
     ({"routes": [{"model": "default", "subscription": "s"}, {"model": "default", "subscription": "t"}]}, "twice"),
     ({"routes": [{"model": "default", "subscription": "s"}, {"model": "b2b", "subscription": "S"}]}, "twice"),
     ({"routes": [{"model": "Default", "subscription": "s"}]}, "route name"),
     ({"routes": [{"model": "churn.v2", "subscription": "s"}]}, "route name"),
     ({"routes": [{"model": "default", "subscription": "a b"}]}, "subscription"),
     ({"routes": [{"model": "default"}]}, "expected"),
     ({"routes": [{"model": "default", "subscription": "s", "uri": "x"}]}, "expected")],
)  # fmt: skip
def test_route_declaration_errors_name_the_entry(document: object, message: str) -> None:
    with pytest.raises(RoutesError, match=message):
        parse_routes(document, "models.json")


def test_a_broken_routes_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "models.json"
    bad.write_text("{not json")
    with pytest.raises(SettingsError, match=r"MODEL_ROUTES_FILE.*not readable JSON"):
        load_settings({**BASE_ENV, "MODEL_ROUTES_FILE": str(bad)})


@pytest.mark.parametrize("plan", ["FlexConsumption", "ElasticPremium"])
def test_azure_trusts_a_written_output_and_the_local_stack_checks_it(plan: str) -> None:
    """Azure Storage keeps acknowledged writes; Azurite restores its last save after kill -9 (the local stack)."""
    assert make_settings().reconcile_check_outputs  # the code's default: checked
    azure = str(function_app_settings(plan)["RECONCILE_CHECK_OUTPUTS"])
    assert not make_settings(RECONCILE_CHECK_OUTPUTS=azure).reconcile_check_outputs
    local = json.loads((REPO / "local.settings.json.example").read_text())["Values"]["RECONCILE_CHECK_OUTPUTS"]
    assert make_settings(RECONCILE_CHECK_OUTPUTS=local).reconcile_check_outputs
