"""One source of truth: topic, subscription, rule, container and setting names agree everywhere.

Sources compared: the emulator config (infra/servicebus-entities.json, which the Bicep also loads, plus one
subscription per model route of models.json, as the local stack writes it and the Bicep generates it),
infra/names.json, the Bicep templates (evaluated offline, see bicep_model), local.settings.json.example,
host.json, the function app's settings code and indexed bindings (``app.get_functions()``), the scoring
service's settings and the Azure ML deployment script. A missing file fails with its name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.function_app import indexed_bindings
from tests.unit.infra.bicep_model import INFRA, REPO, Dynamic, function_app_settings, main_scope, module_scope

PLANS = ("FlexConsumption", "ElasticPremium")
KV_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=.+\)$")
BINDING_EXPRESSION = re.compile(r"%([A-Za-z0-9_]+)%")
# Settings the platform or the Functions host reads, not our code.
PLATFORM_PREFIXES = ("AzureWebJobs", "FUNCTIONS_", "WEBSITE_", "APPLICATIONINSIGHTS_", "SCM_", "ENABLE_ORYX")
PLATFORM_NAMES = {"AZURE_CLIENT_ID", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"}  # the latter: the Python worker


def read_json(path: Path) -> Any:
    if not path.exists():
        pytest.fail(f"{path.relative_to(REPO)} is missing")
    return json.loads(path.read_text())


@cache
def names() -> dict[str, Any]:
    result: dict[str, Any] = read_json(INFRA / "names.json")
    return result


@cache
def namespace() -> dict[str, Any]:
    """The emulator's effective config: the entities file plus the model routes' subscriptions."""
    from devstack.routes import servicebus_config
    from shared.routes import load_routes

    read_json(INFRA / "servicebus-entities.json")
    config = servicebus_config(load_routes(REPO / "models.json"))
    namespaces = config["UserConfig"]["Namespaces"]
    assert len(namespaces) == 1, "the Bicep generates exactly one namespace from the emulator config"
    result: dict[str, Any] = namespaces[0]
    return result


def entities() -> dict[str, Any]:
    return {topic["Name"]: topic for topic in namespace()["Topics"]}


def subscription(topic: str, name: str) -> dict[str, Any]:
    assert topic in entities(), f"topic {topic!r} is not in servicebus-entities.json"
    subs = {s["Name"]: s for s in entities()[topic]["Subscriptions"]}
    assert name in subs, f"subscription {topic}/{name} is not in servicebus-entities.json"
    return subs[name]


def local_settings() -> dict[str, str]:
    values: dict[str, str] = read_json(REPO / "local.settings.json.example")["Values"]
    return values


def is_app_setting(name: str) -> bool:
    """An app setting our code reads (not the platform's, not a binding connection's parts)."""
    return not (name.startswith(PLATFORM_PREFIXES) or name in PLATFORM_NAMES or "__" in name.rstrip("_"))


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers which names were read."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def resolved(settings: Mapping[str, Any]) -> dict[str, str]:
    """Deployed settings as the app sees them: Key Vault references and outputs replaced by sample values."""
    samples = {"SCORING_URI": "https://churn-x.westeurope.inference.ml.azure.com/score", "SCORING_KEY": "key"}
    env: dict[str, str] = {}
    for name, value in settings.items():
        if isinstance(value, str) and KV_REFERENCE.match(value):
            env[name] = samples.get(name, "secret")
        elif isinstance(value, Dynamic):
            env[name] = "https://deployed.example/" if name.endswith(("Uri", "Namespace")) else "deployed"
        else:
            env[name] = str(value)
    return env


@cache
def indexed_functions(blob_trigger_source: str) -> dict[str, list[dict[str, Any]]]:
    """function name -> bindings, as the worker indexes function_app.py (in a fresh interpreter)."""
    if not (REPO / "function_app.py").exists():
        pytest.fail("function_app.py is missing")
    return indexed_bindings({"BLOB_TRIGGER_SOURCE": blob_trigger_source})


def triggers(blob_trigger_source: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for function, bindings in indexed_functions(blob_trigger_source).items():
        for binding in bindings:
            if binding["type"].endswith("Trigger"):
                yield function, binding


def resolve(value: str, settings: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        assert match.group(1) in settings, f"binding expression %{match.group(1)}% has no app setting"
        return settings[match.group(1)]

    return BINDING_EXPRESSION.sub(replace, value)


# --- Service Bus: emulator config, names.json, Bicep ---------------------------------------------------


def test_service_bus_roles_name_entities_of_the_emulator_config() -> None:
    sb = names()["serviceBus"]
    assert not subscription(sb["requestTopic"], sb["scoringSubscription"])["Properties"]["RequiresSession"]
    assert subscription(sb["resultTopic"], sb["writerSubscription"])["Properties"]["RequiresSession"]
    assert subscription(sb["resultTopic"], sb["clientSubscription"])["Properties"]["RequiresSession"]
    for topic in (sb["requestTopic"], sb["resultTopic"]):
        assert entities()[topic]["Properties"]["RequiresDuplicateDetection"], f"{topic} needs duplicate detection"


def test_bicep_generates_service_bus_entities_from_the_emulator_config() -> None:
    scope = module_scope(main_scope(), "serviceBus")
    assert scope.path == INFRA / "modules" / "servicebus.bicep"
    config = scope.lookup("config")
    assert config == read_json(INFRA / "servicebus-entities.json"), "servicebus.bicep must load the emulator config"
    assert [q["Name"] for q in scope.lookup("queues")] == [q["Name"] for q in namespace().get("Queues", [])]
    topics = [t["Name"] for t in scope.lookup("topics")]
    subs = sorted((s["topic"], s["name"], json.dumps(s["properties"])) for s in scope.lookup("subscriptions"))
    rules = sorted((r["topic"], r["subscription"], r["name"]) for r in scope.lookup("rules"))
    assert topics == list(entities())
    assert subs == sorted(
        (t, s["Name"], json.dumps(s.get("Properties", {})))
        for t, topic in entities().items()
        for s in topic["Subscriptions"]
    )
    expected_rules = [
        (t, s["Name"], r["Name"])
        for t, topic in entities().items()
        for s in topic["Subscriptions"]
        for r in s.get("Rules", [])
    ]
    assert rules == sorted(expected_rules)
    bicep_rules = {(r["subscription"], json.dumps(r["properties"])) for r in scope.lookup("rules")}
    assert bicep_rules == {
        (s["Name"], json.dumps(r["Properties"]))
        for topic in entities().values()
        for s in topic["Subscriptions"]
        for r in s.get("Rules", [])
    }
    resources = scope.tree["resources"]
    for symbol, array in [
        ("queueResources", "queues"),
        ("topicResources", "topics"),
        ("subscriptionResources", "subscriptions"),
    ]:
        assert resources[symbol]["config"]["loop_type"]["detail"]["array_name"] == array


def test_every_emulator_property_reaches_the_bicep() -> None:
    """A property the Bicep does not map would silently differ between the emulator and Azure."""
    text = (INFRA / "modules" / "servicebus.bicep").read_text()
    for queue in namespace().get("Queues", []):
        for key in queue.get("Properties", {}):
            assert f".?{key}" in text, f"queue property {key} is not mapped in servicebus.bicep"
    for topic in entities().values():
        for key in topic.get("Properties", {}):
            assert f".?{key}" in text, f"topic property {key} is not mapped in servicebus.bicep"
        for sub in topic.get("Subscriptions", []):
            for key in sub.get("Properties", {}):
                assert f".?{key}" in text, f"subscription property {key} is not mapped in servicebus.bicep"
            for rule in sub.get("Rules", []):
                props = rule["Properties"]
                kind = props["FilterType"]
                assert kind.lower() in ("sql", "correlation"), f"rule {rule['Name']}: filter type {kind} is not mapped"
                unknown = set(props) - {"FilterType", "SqlFilter", "CorrelationFilter", "Action"}
                assert not unknown, f"rule {rule['Name']}: {sorted(unknown)} not mapped in servicebus.bicep"
                for key in props.get("CorrelationFilter", {}):
                    assert f"CorrelationFilter.?{key}" in text, f"correlation filter field {key} is not mapped"
    assert ".?Action.?SqlExpression" in text, "rule actions are not mapped"


def test_durations_are_iso_8601() -> None:
    duration = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
    for topic in entities().values():
        blocks = [topic["Properties"]] + [s["Properties"] for s in topic["Subscriptions"]]
        for props in blocks:
            for key, value in props.items():
                if key.endswith(("TimeToLive", "TimeWindow", "Duration")):
                    assert duration.match(value), f"{key}={value!r} is not an ISO 8601 duration"


# --- Containers ------------------------------------------------------------------------------------------


def test_containers_agree() -> None:
    containers = names()["containers"]
    storage = module_scope(main_scope(), "storage")
    assert storage.params["dataContainers"] == [containers[k] for k in ("input", "output", "ledger", "results")]
    assert storage.params["deploymentContainer"] == containers["deployment"]
    local = local_settings()
    for plan in PLANS:
        settings = function_app_settings(plan)
        for key in ("input", "output", "ledger"):
            setting = f"{key.upper()}_CONTAINER"
            assert settings[setting] == local[setting] == containers[key], setting


# --- Function app settings: Bicep, local example, code ---------------------------------------------------


def code_reads(settings: Mapping[str, str]) -> tuple[Any, set[str]]:
    from shared.settings import blob_trigger_source, declared_routes, load_endpoint, load_settings

    env = RecordingEnv(settings)
    loaded = load_settings(env)
    for model in loaded.models:
        load_endpoint(env, model)
    blob_trigger_source(env)
    declared_routes(env)
    return loaded, env.read


@pytest.mark.parametrize("plan", PLANS)
def test_deployed_settings_load_and_carry_the_shared_names(plan: str) -> None:
    settings = function_app_settings(plan)
    loaded, read = code_reads(resolved(settings))
    sb, containers = names()["serviceBus"], names()["containers"]
    assert (loaded.input_container, loaded.output_container, loaded.ledger_container) == (
        containers["input"],
        containers["output"],
        containers["ledger"],
    )
    assert (loaded.request_topic, loaded.result_topic) == (sb["requestTopic"], sb["resultTopic"])
    assert loaded.routes[0].subscription == sb["scoringSubscription"]
    assert settings["WRITER_SUBSCRIPTION"] == sb["writerSubscription"]
    assert loaded.data_storage.uses_identity and loaded.service_bus.uses_identity
    binding_names = {
        name
        for _, bindings in indexed_functions(settings["BLOB_TRIGGER_SOURCE"]).items()
        for binding in bindings
        for value in binding.values()
        if isinstance(value, str)
        for name in BINDING_EXPRESSION.findall(value)
    }
    unknown = {name for name in settings if is_app_setting(name)} - read - binding_names
    assert not unknown, f"Bicep sets app settings the code never reads: {sorted(unknown)}"


@pytest.mark.parametrize("plan", PLANS)
def test_secrets_are_key_vault_references(plan: str) -> None:
    secret = re.compile(r"(KEY|SECRET|PASSWORD|CONNECTIONSTRING)$", re.IGNORECASE)
    for name, value in function_app_settings(plan).items():
        if secret.search(name.replace("_", "")) and name != "APPLICATIONINSIGHTS_CONNECTION_STRING":
            assert KV_REFERENCE.match(str(value)), f"{name} must be a Key Vault reference, not a value"
    text = (INFRA / "modules" / "functionapp.bicep").read_text()
    assert "listKeys" not in text and "AccountKey=" not in text, "no storage keys in app settings"


def test_local_example_names_settings_the_code_reads() -> None:
    local = local_settings()
    _, read = code_reads(local)
    route_settings = re.compile(r"^SCORING_(URI|KEY|DEPLOYMENT)__[A-Z0-9_]+$")
    binding_names = {
        name
        for function, binding in triggers(local["BLOB_TRIGGER_SOURCE"])
        for value in binding.values()
        if isinstance(value, str)
        for name in BINDING_EXPRESSION.findall(value)
    }
    known = read | binding_names | {"DataStorage", "ServiceBus"}
    unknown = {n for n in local if is_app_setting(n) and n not in known and not route_settings.match(n)}
    assert not unknown, f"local.settings.json.example has settings no code reads: {sorted(unknown)}"
    deployed = {n for n in function_app_settings("FlexConsumption") if is_app_setting(n)}
    assert deployed <= set(local), f"deployed settings missing from the local example: {sorted(deployed - set(local))}"


# --- Indexed bindings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", PLANS)
def test_bindings_resolve_against_deployed_settings(plan: str) -> None:
    settings = resolved(function_app_settings(plan))
    sb = names()["serviceBus"]
    route_subscriptions = module_scope(main_scope(hostingPlan=plan), "rbac").params["routeSubscriptions"]
    receiving = {
        (sb["requestTopic"], sb["scoringSubscription"]),
        *((sb["requestTopic"], name) for name in route_subscriptions),
        (sb["resultTopic"], sb["writerSubscription"]),
    }
    seen_blob = False
    for function, binding in triggers(settings["BLOB_TRIGGER_SOURCE"]):
        for value in binding.values():
            if isinstance(value, str):
                resolve(value, settings)
        connection = binding.get("connection")
        if binding["type"] == "serviceBusTrigger":
            topic, sub = resolve(binding["topicName"], settings), resolve(binding["subscriptionName"], settings)
            props = subscription(topic, sub)["Properties"]
            assert bool(binding.get("isSessionsEnabled", False)) == props["RequiresSession"], function
            assert (topic, sub) in receiving, f"{function}: the identity has no receiver role on {topic}/{sub}"
            assert settings[f"{connection}__fullyQualifiedNamespace"]
        if binding["type"] == "blobTrigger":
            seen_blob = True
            assert function == names()["functions"]["blobTrigger"], "the Event Grid webhook names this function"
            container = resolve(binding["path"], settings).split("/")[0]
            assert container == names()["containers"]["input"]
            assert binding.get("source") == settings["BLOB_TRIGGER_SOURCE"]
            assert settings[f"{connection}__blobServiceUri"] and settings[f"{connection}__queueServiceUri"]
        if connection:
            assert settings[f"{connection}__credential"] == "managedidentity", connection
            assert f"{connection}__clientId" in settings, connection
    assert seen_blob, "no blob trigger indexed"
    indexed = indexed_functions(settings["BLOB_TRIGGER_SOURCE"])
    for role in ("scoring", "writer"):
        assert names()["functions"][role] in indexed, f"names.json functions.{role} is not an indexed function"


def test_flex_uses_event_grid_and_premium_polls() -> None:
    assert function_app_settings("FlexConsumption")["BLOB_TRIGGER_SOURCE"] == "EventGrid"
    assert function_app_settings("ElasticPremium")["BLOB_TRIGGER_SOURCE"] == "LogsAndContainerScan"
    assert "FUNCTIONS_WORKER_RUNTIME" not in function_app_settings("FlexConsumption"), "Flex rejects it"


def test_host_json_bundle_has_the_event_grid_blob_trigger() -> None:
    """The Event Grid blob trigger (Flex) needs the Storage extension 5.x, which bundle 4.x carries."""
    host = read_json(REPO / "host.json")
    assert host["version"] == "2.0"
    bundle = host["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert re.match(r"^\[4\.", bundle["version"]), "expected extension bundle 4.x"


# --- Scoring service and Azure ML --------------------------------------------------------------------------


def deploy_script_environment() -> dict[str, str]:
    """The environment variables deploy_aml.sh gives the scoring deployment, with sample values."""
    text = (INFRA / "deploy_aml.sh").read_text()
    pairs = dict(re.findall(r'"environment_variables\.([A-Z_]+)=\$\{([A-Za-z_]+)\}"', text))
    assert pairs, "deploy_aml.sh sets no environment_variables"
    sample = {
        "AZURE_SERVICEBUS_FQDN": "sb-x.servicebus.windows.net",
        "AZURE_STORAGE_BLOB_ENDPOINT": "https://stx.blob.core.windows.net/",
        "result_topic": names()["serviceBus"]["resultTopic"],
        "results_container": names()["containers"]["results"],
        "route": "default",
        "AZURE_APPINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    }
    return {name: sample[source] for name, source in pairs.items()}


def test_scoring_service_reads_what_the_deployment_sets() -> None:
    from scoring.service.settings import ScoringSettings
    from shared.telemetry.setup import Exporter, TelemetrySettings

    env = RecordingEnv({**deploy_script_environment(), "AZUREML_MODEL_DIR": "/var/azureml-app/model"})
    loaded = ScoringSettings.from_env(env)
    # The scoring server's telemetry goes to Application Insights through the Azure Monitor distro.
    assert TelemetrySettings.from_env(env).exporter == Exporter.AZURE_MONITOR
    assert set(deploy_script_environment()) <= env.read
    assert loaded.async_enabled
    assert loaded.result_topic == names()["serviceBus"]["resultTopic"]
    assert loaded.results_container == names()["containers"]["results"]
    assert loaded.results_account_url and loaded.servicebus_namespace
    assert loaded.model_name == "default", "the deployment serves its route's requests only"


@pytest.mark.filterwarnings("ignore")  # azure-ai-ml imports warn by the hundred (marshmallow 4)
def test_aml_yaml_agrees_with_names() -> None:
    from azure.ai.ml import load_environment, load_online_deployment, load_online_endpoint

    aml = REPO / "scoring" / "aml"
    for name in ("endpoint.yml", "deployment.yml", "environment.yml"):
        if not (aml / name).exists():
            pytest.fail(f"scoring/aml/{name} is missing (deploy_aml.sh deploys from it)")
    endpoint = load_online_endpoint(source=aml / "endpoint.yml")
    assert endpoint.auth_mode == "key", "the function app authenticates to the endpoint with its key"
    assert endpoint.identity is not None and endpoint.identity.type == "system_assigned", (
        "deploy_aml.sh grants the endpoint's system-assigned identity its roles"
    )
    deployment = load_online_deployment(source=aml / "deployment.yml")
    environment = load_environment(source=aml / "environment.yml")
    expected = names()["aml"]
    assert deployment.name == "default", "a deployment is named after its model route; the file shows the default"
    assert environment.name == expected["environmentName"]
    # The loader strips the "azureml:" prefix; what remains is name@label or name:version.
    assert re.split(r"[@:]", str(deployment.model).removeprefix("azureml:"))[0] == f"default-{expected['modelSuffix']}"
    assert re.split(r"[@:]", str(deployment.environment).removeprefix("azureml:"))[0] == expected["environmentName"]
    env_vars = set(deployment.environment_variables or {})
    placeholders = {k for k, v in (deployment.environment_variables or {}).items() if "<" in str(v)}
    unset = placeholders - set(deploy_script_environment())
    assert not unset, f"deployment.yml placeholders deploy_aml.sh does not fill: {sorted(unset)}"
    from scoring.service.settings import ScoringSettings

    probe = RecordingEnv({"AZUREML_MODEL_DIR": "/m"})
    ScoringSettings.from_env(probe)
    unknown = {v for v in env_vars if v.startswith(("RESULT", "SCORING_"))} - probe.read
    assert not unknown, f"deployment.yml sets variables the scoring service does not read: {sorted(unknown)}"


# --- Model routes: one declaration (models.json) -----------------------------------------------------------


def test_an_added_route_gets_its_subscription_rule_role_and_deployment(tmp_path: Path) -> None:
    """Adding one entry to models.json is all it takes: the Bicep derives the rest, as the local stack does."""
    import shutil

    from devstack.routes import servicebus_config
    from shared.routes import load_routes
    from shared.settings import load_endpoint, load_settings
    from tests.unit.infra.bicep_model import Scope

    shutil.copytree(INFRA, tmp_path / "infra")
    declared = read_json(REPO / "models.json")
    declared["routes"].append({"model": "fraud-v2", "subscription": "scoring-fraud-v2"})
    (tmp_path / "models.json").write_text(json.dumps(declared))
    main = Scope(tmp_path / "infra" / "main.bicep", {"hostingPlan": "ElasticPremium"})

    settings = module_scope(main, "functionApp").lookup("allSettings")
    assert settings["SCORING_DEPLOYMENT__FRAUD_V2"] == "fraud-v2"
    assert settings["SCORING_DEPLOYMENT__DEFAULT"] == "default"
    assert module_scope(main, "rbac").params["routeSubscriptions"] == ["scoring-fraud-v2"]

    generated = {s["name"]: s for s in module_scope(main, "serviceBus").lookup("subscriptions")}
    local = servicebus_config(load_routes(tmp_path / "models.json"))["UserConfig"]["Namespaces"][0]["Topics"][0]
    assert local["Name"] == names()["serviceBus"]["requestTopic"]
    for sub in local["Subscriptions"]:
        assert generated[sub["Name"]]["properties"] == sub["Properties"]
        assert generated[sub["Name"]]["rules"] == sub["Rules"]
    assert generated["scoring-fraud-v2"]["rules"][0]["Properties"]["CorrelationFilter"] == {
        "Properties": {"model": "fraud-v2"}
    }

    env = {**resolved(settings), "MODEL_ROUTES_FILE": str(tmp_path / "models.json")}
    route = load_settings(env).route("fraud-v2")
    assert route is not None and route.subscription == "scoring-fraud-v2"
    assert load_endpoint(env, "fraud-v2").deployment == "fraud-v2"
