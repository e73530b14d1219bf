"""Every identity's roles, as the templates and deploy_aml.sh grant them, equal the table in docs/deploy.md.

The table (between the ``roles:begin`` / ``roles:end`` markers) is the one place that says which role each
identity holds where, with the Microsoft documentation that asks for it. The Bicep's role assignments are
read with the offline evaluator (loops unrolled, conditions applied) for each hosting plan, with the
deploying person's id and one extra model route set so that every conditional grant appears; the
endpoint's grants are read from deploy_aml.sh's dry run. Role ids are Azure's built-in role definition ids.
"""

from __future__ import annotations

import json
import re
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.function_app import indexed_bindings
from tests.unit.infra.bicep_model import INFRA, REPO, RoleGrant, main_scope, module_scope, role_assignments
from tests.unit.infra.test_infra_scripts import dry_run_commands, option

PLANS = {"FlexConsumption": "Flex Consumption", "ElasticPremium": "Elastic Premium"}
DOC = REPO / "docs" / "deploy.md"
ROUTE_SUBSCRIPTION = "scoring-churn-v2"
ROUTE_PLACEHOLDER = "<each extra route's subscription>"
EXTRA_ROUTES = [  # models.json with one extra route, so every conditional grant appears
    {"model": "default", "subscription": "scoring"},
    {"model": "churn-v2", "subscription": ROUTE_SUBSCRIPTION},
]
USER = "user-object-id"

# Azure built-in role definition ids (the same in every tenant).
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

Row = tuple[str, str, str]  # identity, role, scope


def table() -> list[tuple[Row, str]]:
    """(identity, role, scope) and plans of each row of the roles table."""
    text = DOC.read_text()
    found = re.search(r"<!-- roles:begin -->\n(.*?)<!-- roles:end -->", text, re.DOTALL)
    assert found, "docs/deploy.md has no roles table between <!-- roles:begin --> and <!-- roles:end -->"
    lines = [line for line in found.group(1).splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:4] == ["Identity", "Role", "Scope", "Plans"], header
    rows = []
    for line in lines[2:]:
        cells = [cell.strip().replace("`", "") for cell in line.strip("|").split("|")]
        rows.append(((cells[0], cells[1], cells[2]), cells[3]))
    return rows


def documented(plan: str) -> list[Row]:
    rows = [row for row, plans in table() if plans == "both" or plans == PLANS[plan]]
    return rows


def readable_scope(grant: RoleGrant) -> str:
    kind, name = grant.scope_type.removeprefix("Microsoft."), grant.scope_name
    rbac = module_scope(main_scope(), "rbac")
    if kind == "Storage/storageAccounts":
        accounts = {rbac.lookup("dataAccountName"): "data account", rbac.lookup("hostAccountName"): "host account"}
        return accounts[name]
    if kind == "Storage/storageAccounts/blobServices/containers":
        return f"container {name.rsplit('/', 1)[-1]}"
    if kind == "ServiceBus/namespaces/topics":
        return f"topic {name.rsplit('/', 1)[-1]}"
    if kind == "ServiceBus/namespaces/topics/subscriptions":
        topic, subscription = name.rsplit("/", 2)[-2:]
        return f"subscription {topic}/{ROUTE_PLACEHOLDER if subscription == ROUTE_SUBSCRIPTION else subscription}"
    return {"KeyVault/vaults": "Key Vault", "Insights/components": "Application Insights"}[kind]


def bicep_grants(plan: str) -> list[Row]:
    main = main_scope(hostingPlan=plan, principalId=USER, modelRoutes=EXTRA_ROUTES)  # models.json with an extra route
    rbac = module_scope(main, "rbac")
    identities = {str(rbac.lookup("functionPrincipalId")): "function app", USER: "deploying user"}
    rows = []
    for grant in role_assignments(rbac):
        assert grant.role_id in BUILT_IN_ROLES, f"{grant.symbol}: unknown role id {grant.role_id}"
        rows.append((identities[str(grant.principal)], BUILT_IN_ROLES[grant.role_id], readable_scope(grant)))
    return rows


def endpoint_grants(model_dir: Path) -> list[Row]:
    names = json.loads((INFRA / "names.json").read_text())
    scopes = {"<result topic id>": f"topic {names['serviceBus']['resultTopic']}"}
    rows = []
    for command in dry_run_commands("--model", str(model_dir)):
        if command[:3] == ["role", "assignment", "create"]:
            scope = option(command, "--scope")
            container = re.search(r"/blobServices/default/containers/([^/]+)$", scope)
            readable = f"container {container.group(1)}" if container else scopes[scope]
            rows.append(("endpoint", option(command, "--role"), readable))
    return rows


@pytest.mark.parametrize("plan", PLANS)
def test_granted_roles_equal_the_documented_table(plan: str, model_dir: Path) -> None:
    granted = bicep_grants(plan) + endpoint_grants(model_dir)
    assert len(granted) == len(set(granted)), f"a role is granted twice: {sorted(granted)}"
    expected = documented(plan)
    assert len(expected) == len(set(expected)), "docs/deploy.md lists a role twice"
    missing, extra = set(expected) - set(granted), set(granted) - set(expected)
    assert not missing, f"documented but not granted on {plan}: {sorted(missing)}"
    assert not extra, f"granted on {plan} but not in the table: {sorted(extra)}"


def test_every_trigger_subscription_has_receiver_and_owner() -> None:
    """Microsoft's Service Bus trigger roles: Data Receiver and Data Owner, scoped to the subscription."""
    for plan in PLANS:
        grants = bicep_grants(plan)
        subscriptions = {
            scope for who, _, scope in grants if who == "function app" and scope.startswith("subscription")
        }
        assert subscriptions, "no subscription roles"
        for scope in subscriptions:
            roles = {role for who, role, where in grants if who == "function app" and where == scope}
            assert roles == {"Azure Service Bus Data Receiver", "Azure Service Bus Data Owner"}, (scope, roles)


def test_blob_trigger_connection_has_the_documented_pair() -> None:
    """The blob trigger's own connection (DataStorage): Blob Data Owner and Queue Data Contributor, both plans."""
    for plan in PLANS:
        roles = {role for who, role, scope in bicep_grants(plan) if who == "function app" and scope == "data account"}
        assert {"Storage Blob Data Owner", "Storage Queue Data Contributor"} <= roles, (plan, roles)


def test_table_rows_name_their_source() -> None:
    text = DOC.read_text()
    body = re.search(r"<!-- roles:begin -->\n(.*?)<!-- roles:end -->", text, re.DOTALL)
    assert body
    for line in body.group(1).splitlines()[2:]:
        if line.startswith("|"):
            why = line.strip("|").split("|")[4]
            assert re.search(r"\[[^\]]+\]", why), f"row without a documentation reference: {line}"


@cache
def indexed_triggers(plan: str) -> list[dict[str, Any]]:
    """The trigger bindings of function_app.py as the worker indexes it on ``plan`` (models.json with one extra
    route), with their %SETTING% expressions resolved against the app settings the Bicep deploys."""
    main = main_scope(hostingPlan=plan, modelRoutes=EXTRA_ROUTES)
    values = {name: str(value) for name, value in module_scope(main, "functionApp").lookup("allSettings").items()}
    with tempfile.TemporaryDirectory() as folder:
        routes = Path(folder) / "models.json"
        routes.write_text(json.dumps({"routes": EXTRA_ROUTES}))
        env = {"BLOB_TRIGGER_SOURCE": values["BLOB_TRIGGER_SOURCE"], "MODEL_ROUTES_FILE": str(routes)}
        functions = indexed_bindings(env)
    bindings = [b for found in functions.values() for b in found if b["type"].endswith("Trigger")]
    for binding in bindings:
        for key, value in binding.items():
            if isinstance(value, str):
                binding[key] = re.sub(r"%([A-Za-z0-9_]+)%", lambda m: values[m.group(1)], value)
    return bindings


@pytest.mark.parametrize("plan", PLANS)
def test_every_indexed_trigger_has_its_documented_roles(plan: str) -> None:
    """From the functions the worker indexes, not from the Bicep: each trigger's connection holds its roles."""
    granted = {(role, scope) for who, role, scope in bicep_grants(plan) if who == "function app"}
    host = {"Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Account Contributor"}
    kinds = set()
    for binding in indexed_triggers(plan):
        kind = binding["type"]
        kinds.add(kind)
        if kind == "serviceBusTrigger":
            sub = binding["subscriptionName"]
            path = f"{binding['topicName']}/{ROUTE_PLACEHOLDER if sub == ROUTE_SUBSCRIPTION else sub}"
            for role in ("Azure Service Bus Data Receiver", "Azure Service Bus Data Owner"):
                assert (role, f"subscription {path}") in granted, (role, path)
        elif kind == "blobTrigger":
            assert binding["connection"] == "DataStorage"
            for role in ("Storage Blob Data Owner", "Storage Queue Data Contributor"):
                assert (role, "data account") in granted, role
            assert {(role, "host account") for role in host} <= granted
        elif kind == "timerTrigger":
            assert ("Storage Blob Data Owner", "host account") in granted  # singleton locks in host storage
        else:
            assert kind == "httpTrigger", f"no documented roles checked for {kind}"
    assert {"serviceBusTrigger", "blobTrigger", "timerTrigger"} <= kinds
    assert any(b.get("subscriptionName") == ROUTE_SUBSCRIPTION for b in indexed_triggers(plan)), "route not indexed"
