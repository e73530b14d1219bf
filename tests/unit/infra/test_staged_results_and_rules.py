"""Deployment ordering and clean-up the Bicep must get right before Azure ever sees it.

Service Bus answers 409 to concurrent changes of one subscription's rules; the rule resources must run one
at a time (``@batchSize(1)``) and in one chain of ``dependsOn``. Staged outputs left in the results
container are removed by a lifecycle rule, never before the result that names them can still be written.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from tests.unit.infra.bicep_model import INFRA, Scope, evaluate, main_scope, module_scope, parse

RULE_TYPE = "Microsoft.ServiceBus/namespaces/topics/subscriptions/rules"
POLICY_TYPE = "Microsoft.Storage/storageAccounts/managementPolicies"


def iso_duration(text: str) -> timedelta:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text)
    assert match, f"not an ISO 8601 duration: {text!r}"
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def test_rule_changes_run_one_at_a_time_in_one_chain() -> None:
    resources = parse(INFRA / "modules" / "servicebus.bicep")["resources"]
    rules = {symbol: r for symbol, r in resources.items() if r["type"] == RULE_TYPE}
    assert len(rules) >= 3, sorted(rules)
    depends: dict[str, set[str]] = {}
    for symbol, resource in rules.items():
        assert {"type": "batchSize", "argument": 1} in resource["decorators"], f"{symbol} needs @batchSize(1)"
        body = resource["config"]["config"]
        depends[symbol] = set(body.get("dependsOn", [])) & set(rules)
    # A total order: sorted by how many rule resources each waits for, each waits for all before it.
    chain = sorted(depends, key=lambda symbol: len(depends[symbol]))
    for position, symbol in enumerate(chain):
        assert depends[symbol] == set(chain[:position]), f"{symbol} must depend on {chain[:position]}"
    assert chain[-1] == "defaultRuleOverrides", "the $Default override comes last, after the listed rules"


def lifecycle_rule() -> tuple[dict[str, Any], Scope]:
    storage = module_scope(main_scope(), "storage")
    policies = [
        r
        for r in storage.tree["resources"].values()
        if r["type"] == "Microsoft.Storage/storageAccounts/managementPolicies"
    ]
    assert len(policies) == 1, "the data account needs one lifecycle management policy"
    policy = evaluate(policies[0]["config"]["properties"], storage)["policy"]
    assert len(policy["rules"]) == 1
    rule: dict[str, Any] = policy["rules"][0]
    return rule, storage


def test_lifecycle_rule_deletes_only_staged_results_after_their_results_expire() -> None:
    rule, storage = lifecycle_rule()
    names = json.loads((INFRA / "names.json").read_text())
    assert rule["enabled"] is True and rule["type"] == "Lifecycle"
    filters, actions = rule["definition"]["filters"], rule["definition"]["actions"]
    assert filters["prefixMatch"] == [f"{names['containers']['results']}/"]
    assert filters["blobTypes"] == ["blockBlob"]
    assert set(actions) == {"baseBlob"} and set(actions["baseBlob"]) == {"delete"}
    days = actions["baseBlob"]["delete"]["daysAfterModificationGreaterThan"]
    assert isinstance(days, int) and days == storage.params["stagedResultsRetentionDays"]
    config = json.loads((INFRA / "servicebus-entities.json").read_text())
    topic = next(
        t for t in config["UserConfig"]["Namespaces"][0]["Topics"] if t["Name"] == names["serviceBus"]["resultTopic"]
    )
    ttl = iso_duration(topic["Properties"]["DefaultMessageTimeToLive"])
    writer = next(s for s in topic["Subscriptions"] if s["Name"] == names["serviceBus"]["writerSubscription"])
    ttl = max(ttl, iso_duration(writer["Properties"]["DefaultMessageTimeToLive"]))
    # Azure counts whole days since the last modification; a day of margin on top of the result's lifetime.
    assert timedelta(days=days) >= ttl + timedelta(days=1), f"staged outputs deleted after {days} d, results live {ttl}"
