"""host.json and local.settings.json.example agree with the code, the entity config and the AML deployment."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.settings import BATCH_MAX_FILES, load_settings
from tests.support.function_app import fresh_function_app

REPO = Path(__file__).resolve().parents[3]
BINDING_EXPRESSION = re.compile(r"%([A-Za-z0-9_]+)%")


def host_json() -> dict[str, Any]:
    return dict(json.loads((REPO / "host.json").read_text()))


def example_values() -> dict[str, str]:
    return dict(json.loads((REPO / "local.settings.json.example").read_text())["Values"])


def timespan(text: str) -> timedelta:
    hours, minutes, seconds = (int(p) for p in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def iso_minutes(text: str) -> timedelta:
    match = re.fullmatch(r"PT(\d+)M", text)
    assert match, text
    return timedelta(minutes=int(match.group(1)))


def test_extension_bundle_v4() -> None:
    bundle = host_json()["extensionBundle"]
    assert bundle == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}


def test_service_bus_options_fit_the_endpoint_and_the_lock_duration() -> None:
    sb = host_json()["extensions"]["serviceBus"]
    # score_request records each file's outcome itself and returns: the host completes the whole batch then.
    assert sb["autoCompleteMessages"] is True
    # One batch of score_request is sent in requests of SCORING_BATCH_MAX_FILES small files at most.
    assert sb["maxMessageBatchSize"] >= BATCH_MAX_FILES
    deployment = (REPO / "scoring" / "aml" / "deployment.yml").read_text()
    per_instance = int(re.search(r"max_concurrent_requests_per_instance:\s*(\d+)", deployment).group(1))  # type: ignore[union-attr]
    assert 1 <= sb["maxConcurrentCalls"] <= per_instance
    entities = json.loads((REPO / "infra" / "servicebus-entities.json").read_text())
    locks = [
        iso_minutes(sub["Properties"]["LockDuration"])
        for topic in entities["UserConfig"]["Namespaces"][0]["Topics"]
        for sub in topic["Subscriptions"]
    ]
    assert timespan(sb["maxAutoLockRenewalDuration"]) > max(locks)
    assert sb["maxConcurrentSessions"] >= 1


def test_example_settings_load_and_resolve_every_binding_expression() -> None:
    values = example_values()
    settings = load_settings(values)
    assert settings.data_storage.connection_string == "UseDevelopmentStorage=true"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert "UseDevelopmentEmulator=true" in values["ServiceBus"] and "127.0.0.1:5673" in values["ServiceBus"]
    assert values["SCORING_URI"] == "http://127.0.0.1:5001/score"
    for function in fresh_function_app().get_functions():
        for binding in json.loads(function.get_function_json())["bindings"]:
            for value in binding.values():
                for name in BINDING_EXPRESSION.findall(str(value)):
                    assert name in values, f"{function.get_function_name()}: %{name}% has no example value"
