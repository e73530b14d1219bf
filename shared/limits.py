"""The deployment's limits that must agree with each other, and one check of them.

The function app, Service Bus and the scoring endpoint each set limits of their own; set apart, they can
quietly contradict each other (a burst the endpoint answers with 429s, a lock that expires while the function
still runs). :func:`problems` names every disagreement with the settings on both sides:

* concurrency: ``maxConcurrentCalls`` x the plan's maximum instances x the score_request functions that call
  one endpoint must fit what the endpoint takes at once: Azure ML lets ``2 x max_concurrent_requests_per_instance
  x instance_count`` requests in (more are rejected with 429), and the scoring service queues
  ``SCORING_QUEUE_SIZE + SCORING_WORKERS`` per instance (more are answered 429 too);
* request timeout: the function's ``SCORING_READ_TIMEOUT_SECONDS`` outlasts the endpoint's
  ``request_timeout_ms``, so the function reads the endpoint's own answer instead of giving up first;
* function timeout: ``functionTimeout`` covers one endpoint call (connect + read timeout, retries are scheduled
  messages, not loops in the function) and the writer's server-side copy, each with room for storage calls;
* input access: the read SAS the endpoint gets (``SAS_TTL_MINUTES``) lasts until ``RESULT_DEADLINE_MINUTES``,
  when reconcile gives up waiting and resubmits (a queued job must not find its SAS expired before that);
* locks: ``maxAutoLockRenewalDuration`` covers ``functionTimeout``, so a message (or session) stays locked for
  the longest run, and each triggered subscription's ``LockDuration`` leaves the renewer (which renews 10 s
  before expiry) time to act. ``score_request`` takes its messages in batches, whose locks the runtime does not
  renew: it stops calling the endpoint after :data:`BATCH_CALL_BUDGET_SECONDS` (the rest of the batch is
  retried later), so its last call (connect + read timeout) still ends within the request subscription's
  ``LockDuration``.

The tests build :class:`DeploymentLimits` from the shipped files (host.json, the Bicep, servicebus-entities.json,
scoring/aml/deployment.yml) and expect no problem. At start-up the app checks the part it can see
(:func:`check_startup`: host.json and its own settings), which costs one small file read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.config import SettingsError, SettingsReader
from shared.settings import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, RESULT_DEADLINE_MINUTES, SAS_TTL_MINUTES

# Room for the storage and Service Bus calls around the endpoint call or the copy (SAS, ledger, scheduling).
STORAGE_CALLS_SECONDS = 60.0
# The endpoint's answer (408/429) must reach the client before its own read timeout: network and queue margin.
ANSWER_MARGIN_SECONDS = 5.0
# Azure.Messaging.ServiceBus renews a lock min(remaining / 2, 10 s) before it expires; 30 s leaves a renewal
# that is itself slow a further 20 s.
MIN_LOCK_SECONDS = 30.0
MAX_LOCK_SECONDS = 300.0  # Service Bus's largest LockDuration
# How long one score_request batch keeps calling the endpoint; files not sent by then are rescheduled.
BATCH_CALL_BUDGET_SECONDS = 20.0
# How long the writer waits for a server-side copy of a staged output (shared.storage uses it).
COPY_TIMEOUT_SECONDS = 600.0
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")
_ISO_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")


class LimitsError(SettingsError):
    """The deployment's limits contradict each other; the message names the settings on both sides."""


@dataclass(frozen=True)
class FunctionLimits:
    """What the function app itself sets: host.json and its endpoint client's timeouts."""

    max_concurrent_calls: int  # host.json extensions.serviceBus.maxConcurrentCalls
    function_timeout_seconds: float  # host.json functionTimeout
    lock_renewal_seconds: float  # host.json extensions.serviceBus.maxAutoLockRenewalDuration
    connect_timeout_seconds: float  # SCORING_CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds: float  # SCORING_READ_TIMEOUT_SECONDS
    copy_timeout_seconds: float  # the writer's wait for a server-side copy (shared.storage)
    sas_ttl_minutes: int = SAS_TTL_MINUTES  # SAS_TTL_MINUTES: how long the endpoint may read its input
    result_deadline_minutes: int = RESULT_DEADLINE_MINUTES  # RESULT_DEADLINE_MINUTES: when reconcile resubmits


@dataclass(frozen=True)
class EndpointLimits:
    """The scoring endpoint's deployment (scoring/aml/deployment.yml)."""

    max_concurrent_requests_per_instance: int
    instance_count: int
    request_timeout_ms: int
    queue_size: int  # SCORING_QUEUE_SIZE
    workers: int  # SCORING_WORKERS


@dataclass(frozen=True)
class DeploymentLimits:
    function: FunctionLimits
    endpoint: EndpointLimits
    max_instances: int  # Flex maximumInstanceCount, or Elastic Premium maximumElasticWorkerCount
    max_instances_setting: str  # which of the two, for messages
    scoring_functions: int  # score_request functions sending to one deployment (1: each route has its own)
    lock_durations: Mapping[str, float]  # LockDuration (seconds) of each subscription a trigger reads


def function_problems(f: FunctionLimits) -> list[str]:
    """The disagreements the function app can see on its own."""
    found = []
    call = f.connect_timeout_seconds + f.read_timeout_seconds + STORAGE_CALLS_SECONDS
    if f.function_timeout_seconds < call:
        found.append(
            f"host.json functionTimeout ({f.function_timeout_seconds:g} s) is shorter than one endpoint call: "
            f"SCORING_CONNECT_TIMEOUT_SECONDS ({f.connect_timeout_seconds:g} s) + SCORING_READ_TIMEOUT_SECONDS "
            f"({f.read_timeout_seconds:g} s) + {STORAGE_CALLS_SECONDS:g} s of storage calls = {call:g} s"
        )
    copy = f.copy_timeout_seconds + STORAGE_CALLS_SECONDS
    if f.function_timeout_seconds < copy:
        found.append(
            f"host.json functionTimeout ({f.function_timeout_seconds:g} s) is shorter than the writer's copy: "
            f"its timeout ({f.copy_timeout_seconds:g} s) + {STORAGE_CALLS_SECONDS:g} s of storage calls = {copy:g} s"
        )
    if f.sas_ttl_minutes < f.result_deadline_minutes:
        found.append(
            f"SAS_TTL_MINUTES ({f.sas_ttl_minutes}) is shorter than RESULT_DEADLINE_MINUTES "
            f"({f.result_deadline_minutes}): a job still queued or reading its input when the SAS expires fails "
            "with blob_forbidden although reconcile would still wait for its result"
        )
    if f.lock_renewal_seconds < f.function_timeout_seconds:
        found.append(
            f"host.json extensions.serviceBus.maxAutoLockRenewalDuration ({f.lock_renewal_seconds:g} s) is shorter "
            f"than functionTimeout ({f.function_timeout_seconds:g} s): a long run would lose its message's lock "
            "and the message would be delivered again while it runs"
        )
    return found


def problems(limits: DeploymentLimits) -> list[str]:
    """Every disagreement between the function app, Service Bus and the endpoint (empty when they agree)."""
    f, e = limits.function, limits.endpoint
    found = function_problems(f)
    burst = f.max_concurrent_calls * limits.max_instances * limits.scoring_functions
    sending = (
        f"host.json maxConcurrentCalls ({f.max_concurrent_calls}) x {limits.max_instances_setting} "
        f"({limits.max_instances}) x score_request functions per deployment ({limits.scoring_functions}) = {burst}"
    )
    admitted = 2 * e.max_concurrent_requests_per_instance * e.instance_count
    if burst > admitted:
        found.append(
            f"{sending} concurrent requests, but Azure ML admits 2 x max_concurrent_requests_per_instance "
            f"({e.max_concurrent_requests_per_instance}) x instance_count ({e.instance_count}) = {admitted} "
            "(scoring/aml/deployment.yml); the rest are answered 429"
        )
    queued = (e.queue_size + e.workers) * e.instance_count
    if burst > queued:
        found.append(
            f"{sending} concurrent requests, but the scoring service takes (SCORING_QUEUE_SIZE ({e.queue_size}) + "
            f"SCORING_WORKERS ({e.workers})) x instance_count ({e.instance_count}) = {queued} "
            "(scoring/aml/deployment.yml); the rest are answered 429"
        )
    wait = e.request_timeout_ms / 1000 + ANSWER_MARGIN_SECONDS
    if f.read_timeout_seconds < wait:
        found.append(
            f"SCORING_READ_TIMEOUT_SECONDS ({f.read_timeout_seconds:g} s) must outlast the endpoint's "
            f"request_timeout_ms ({e.request_timeout_ms} ms) + {ANSWER_MARGIN_SECONDS:g} s = {wait:g} s, so the "
            "function reads the endpoint's own answer"
        )
    batch_call = BATCH_CALL_BUDGET_SECONDS + f.connect_timeout_seconds + f.read_timeout_seconds
    for subscription, lock in sorted(limits.lock_durations.items()):
        if subscription.startswith("inference-requests/") and lock < batch_call:
            found.append(
                f"LockDuration of subscription {subscription} ({lock:g} s) is shorter than a score_request batch "
                f"can hold its unrenewed locks: {BATCH_CALL_BUDGET_SECONDS:g} s of calls + "
                f"SCORING_CONNECT_TIMEOUT_SECONDS ({f.connect_timeout_seconds:g} s) + SCORING_READ_TIMEOUT_SECONDS "
                f"({f.read_timeout_seconds:g} s) = {batch_call:g} s"
            )
        if not MIN_LOCK_SECONDS <= lock <= MAX_LOCK_SECONDS:
            found.append(
                f"LockDuration of subscription {subscription} ({lock:g} s, infra/servicebus-entities.json; route "
                f"subscriptions: names.json serviceBus.routeSubscriptionProperties) must be "
                f"between {MIN_LOCK_SECONDS:g} s (the lock renewer acts 10 s before expiry) and {MAX_LOCK_SECONDS:g} s"
            )
    return found


def check(found: list[str]) -> None:
    if found:
        raise LimitsError("the deployment's limits disagree:\n- " + "\n- ".join(found))


def timespan_seconds(value: Any, setting: str) -> float:
    """Seconds from a .NET TimeSpan (``[d.]hh:mm:ss``), as host.json writes durations."""
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise LimitsError(f"host.json {setting}: {value!r} is not a TimeSpan like 00:05:00")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def iso_seconds(value: str, setting: str) -> float:
    """Seconds from an ISO 8601 time duration (``PT1M``), as Service Bus writes LockDuration."""
    match = _ISO_DURATION.match(value.strip())
    if not match or not any(match.groups()):
        raise LimitsError(f"{setting}: {value!r} is not an ISO 8601 duration like PT1M")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def function_limits(
    host: Mapping[str, Any], env: Mapping[str, str], copy_timeout_seconds: float = COPY_TIMEOUT_SECONDS
) -> FunctionLimits:
    """Reads host.json's values and the endpoint client's timeouts (with the app's defaults)."""
    sb = host.get("extensions", {}).get("serviceBus", {})
    read = SettingsReader(env)
    return FunctionLimits(
        max_concurrent_calls=int(sb.get("maxConcurrentCalls", 16)),
        function_timeout_seconds=timespan_seconds(host.get("functionTimeout", "00:30:00"), "functionTimeout"),
        lock_renewal_seconds=timespan_seconds(
            sb.get("maxAutoLockRenewalDuration", "00:05:00"), "extensions.serviceBus.maxAutoLockRenewalDuration"
        ),
        connect_timeout_seconds=read.number("SCORING_CONNECT_TIMEOUT_SECONDS", CONNECT_TIMEOUT_SECONDS),
        read_timeout_seconds=read.number("SCORING_READ_TIMEOUT_SECONDS", READ_TIMEOUT_SECONDS),
        copy_timeout_seconds=copy_timeout_seconds,
        sas_ttl_minutes=read.integer("SAS_TTL_MINUTES", SAS_TTL_MINUTES, minimum=1),
        result_deadline_minutes=read.integer("RESULT_DEADLINE_MINUTES", RESULT_DEADLINE_MINUTES, minimum=1),
    )


def check_startup(env: Mapping[str, str], host_json: Path) -> FunctionLimits:
    """The start-up check: host.json against the app's own settings; raises :class:`LimitsError` naming them."""
    limits = function_limits(json.loads(host_json.read_text()), env)
    check(function_problems(limits))
    return limits
