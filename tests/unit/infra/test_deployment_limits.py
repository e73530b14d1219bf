"""The shipped limits agree: host.json, the Bicep (each plan), servicebus-entities.json and the AML deployment.

The values are read from the files that deploy them (the Bicep through the offline evaluator, the app's
settings as the Bicep sets them, with the code's defaults where it sets none) and handed to
``shared.limits.problems``, the same check the app runs at start-up for its own part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.routes import servicebus_config
from shared.limits import (
    COPY_TIMEOUT_SECONDS,
    DeploymentLimits,
    EndpointLimits,
    check,
    function_limits,
    iso_seconds,
    problems,
)
from shared.routes import load_routes
from tests.support.function_app import run_python
from tests.unit.infra.bicep_model import INFRA, REPO, evaluate, function_app_settings, main_scope, module_scope

PLANS = {"FlexConsumption": "maximumInstanceCount", "ElasticPremium": "maximumElasticWorkerCount"}


def max_instances(plan: str) -> int:
    app = module_scope(main_scope(hostingPlan=plan), "functionApp")
    if plan == "FlexConsumption":
        value = app.lookup("maximumInstanceCount")
    else:
        farm = next(r for r in app.tree["resources"].values() if r["type"] == "Microsoft.Web/serverfarms")
        value = evaluate(farm["config"]["properties"], app)["maximumElasticWorkerCount"]
    assert isinstance(value, int), f"{PLANS[plan]} of {plan} is not a number: {value!r}"
    return value


def endpoint_limits() -> EndpointLimits:
    deployment: dict[str, Any] = yaml.safe_load((REPO / "scoring" / "aml" / "deployment.yml").read_text())
    request, env = deployment["request_settings"], deployment["environment_variables"]
    assert "max_queue_wait_ms" not in request, "deprecated for managed online endpoints: use request_timeout_ms"
    return EndpointLimits(
        max_concurrent_requests_per_instance=request["max_concurrent_requests_per_instance"],
        instance_count=deployment["instance_count"],
        request_timeout_ms=request["request_timeout_ms"],
        queue_size=int(env["SCORING_QUEUE_SIZE"]),
        workers=int(env["SCORING_WORKERS"]),
    )


def triggered_lock_durations() -> dict[str, float]:
    names = json.loads((INFRA / "names.json").read_text())["serviceBus"]
    # The emulator's effective config: servicebus-entities.json plus one subscription per model route.
    config = servicebus_config(load_routes(REPO / "models.json"))
    durations = {}
    for topic in config["UserConfig"]["Namespaces"][0]["Topics"]:
        for sub in topic["Subscriptions"]:
            # Every request-topic subscription is a route some score_request may read; the writer reads its own.
            if topic["Name"] == names["requestTopic"] or sub["Name"] == names["writerSubscription"]:
                path = f"{topic['Name']}/{sub['Name']}"
                durations[path] = iso_seconds(sub["Properties"]["LockDuration"], f"{path} LockDuration")
    return durations


def shipped(plan: str) -> DeploymentLimits:
    host = json.loads((REPO / "host.json").read_text())
    settings = {k: str(v) for k, v in function_app_settings(plan).items()}
    return DeploymentLimits(
        function=function_limits(host, settings, COPY_TIMEOUT_SECONDS),
        endpoint=endpoint_limits(),
        max_instances=max_instances(plan),
        max_instances_setting=PLANS[plan],
        scoring_functions=1,
        lock_durations=triggered_lock_durations(),
    )


@pytest.mark.parametrize("plan", PLANS)
def test_shipped_limits_agree(plan: str) -> None:
    limits = shipped(plan)
    assert problems(limits) == []
    check(problems(limits))
    assert {"inference-requests/scoring", "inference-results/writer"} <= set(limits.lock_durations)


def test_documented_arithmetic_matches_the_shipped_values() -> None:
    """docs/deploy.md shows the arithmetic with the shipped numbers; they must be the ones checked here."""
    doc = (REPO / "docs" / "deploy.md").read_text()
    flex, endpoint = shipped("FlexConsumption"), endpoint_limits()
    f = flex.function
    burst = f.max_concurrent_calls * flex.max_instances
    for text in (
        f"{f.max_concurrent_calls} x {flex.max_instances} = {burst}",
        f"2 x {endpoint.max_concurrent_requests_per_instance} x {endpoint.instance_count} = "
        f"{2 * endpoint.max_concurrent_requests_per_instance * endpoint.instance_count}",
        f"({endpoint.queue_size} + {endpoint.workers}) x {endpoint.instance_count} = "
        f"{(endpoint.queue_size + endpoint.workers) * endpoint.instance_count}",
        f"{f.connect_timeout_seconds:g} + {f.read_timeout_seconds:g} + 60 = "
        f"{f.connect_timeout_seconds + f.read_timeout_seconds + 60:g} s",
        f"{f.copy_timeout_seconds:g} + 60 = {f.copy_timeout_seconds + 60:g} s",
        f"functionTimeout {f.function_timeout_seconds:g} s",
        f"maxAutoLockRenewalDuration {f.lock_renewal_seconds:g} s",
        f"{endpoint.request_timeout_ms / 1000:g} + 5 = {endpoint.request_timeout_ms / 1000 + 5:g} s",
    ):
        assert text in doc, f"docs/deploy.md does not show {text!r}"


def test_the_app_checks_its_part_at_start_up(tmp_path: Path) -> None:
    """Indexing function_app.py with a read timeout longer than the function may run fails, naming both."""
    env = {"SCORING_READ_TIMEOUT_SECONDS": "3600", "BLOB_TRIGGER_SOURCE": "EventGrid"}
    done = run_python("import function_app", env)
    assert done.returncode != 0
    assert "LimitsError" in done.stderr
    assert "functionTimeout" in done.stderr and "SCORING_READ_TIMEOUT_SECONDS" in done.stderr
    ok = run_python("import function_app", {**env, "SCORING_READ_TIMEOUT_SECONDS": "30"})
    assert ok.returncode == 0, ok.stderr
