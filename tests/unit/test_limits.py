"""shared.limits: each disagreement is found and named with the settings on both sides."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from shared.config import SettingsError
from shared.limits import (
    DeploymentLimits,
    EndpointLimits,
    FunctionLimits,
    LimitsError,
    check,
    check_startup,
    function_limits,
    iso_seconds,
    problems,
    timespan_seconds,
)

FUNCTION = FunctionLimits(
    max_concurrent_calls=2,
    function_timeout_seconds=900,
    lock_renewal_seconds=900,
    connect_timeout_seconds=5,
    read_timeout_seconds=30,
    copy_timeout_seconds=600,
)
ENDPOINT = EndpointLimits(
    max_concurrent_requests_per_instance=20, instance_count=1, request_timeout_ms=10_000, queue_size=40, workers=2
)
GOOD = DeploymentLimits(
    function=FUNCTION,
    endpoint=ENDPOINT,
    max_instances=20,
    max_instances_setting="maximumInstanceCount",
    scoring_functions=1,
    lock_durations={"inference-requests/scoring": 60, "inference-results/writer": 60},
)


def test_agreeing_limits_pass() -> None:
    assert problems(GOOD) == []
    check(problems(GOOD))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: replace(d, max_instances=21), ["maxConcurrentCalls", "maximumInstanceCount", "= 42", "2 x"]),
        (
            lambda d: replace(d, scoring_functions=2, endpoint=replace(ENDPOINT, queue_size=78)),
            ["score_request functions per deployment (2) = 80", "Azure ML admits"],
        ),
        (
            lambda d: replace(d, endpoint=replace(ENDPOINT, max_concurrent_requests_per_instance=19)),
            ["max_concurrent_requests_per_instance (19)", "instance_count (1) = 38"],
        ),
        (lambda d: replace(d, endpoint=replace(ENDPOINT, queue_size=37)), ["SCORING_QUEUE_SIZE (37)", "= 39"]),
        (
            lambda d: replace(d, endpoint=replace(ENDPOINT, request_timeout_ms=26_000)),
            ["SCORING_READ_TIMEOUT_SECONDS (30 s)", "request_timeout_ms (26000 ms)"],
        ),
        (
            lambda d: replace(
                d,
                function=replace(FUNCTION, read_timeout_seconds=900, function_timeout_seconds=900),
                lock_durations={"inference-results/writer": 60},
            ),
            ["functionTimeout (900 s)", "SCORING_READ_TIMEOUT_SECONDS (900 s)", "= 965 s"],
        ),
        (
            lambda d: replace(d, function=replace(FUNCTION, read_timeout_seconds=40)),
            ["LockDuration of subscription inference-requests/scoring (60 s)", "unrenewed locks", "= 65 s"],
        ),
        (
            lambda d: replace(d, function=replace(FUNCTION, copy_timeout_seconds=850)),
            ["functionTimeout (900 s)", "writer's copy", "= 910 s"],
        ),
        (
            lambda d: replace(d, function=replace(FUNCTION, sas_ttl_minutes=30)),
            ["SAS_TTL_MINUTES (30)", "RESULT_DEADLINE_MINUTES (60)"],
        ),
        (
            lambda d: replace(d, function=replace(FUNCTION, lock_renewal_seconds=300)),
            ["maxAutoLockRenewalDuration (300 s)", "functionTimeout (900 s)"],
        ),
        (lambda d: replace(d, lock_durations={"t/s": 20}), ["LockDuration of subscription t/s (20 s,"]),
        (lambda d: replace(d, lock_durations={"t/s": 301}), ["LockDuration of subscription t/s (301 s,"]),
    ],
)
def test_each_disagreement_names_its_settings(change: object, named: list[str]) -> None:
    found = problems(change(GOOD))  # type: ignore[operator]
    assert len(found) == 1, found
    for text in named:
        assert text in found[0], (text, found[0])
    with pytest.raises(LimitsError) as raised:
        check(found)
    assert isinstance(raised.value, SettingsError)  # one error type for every settings problem


def test_durations() -> None:
    assert timespan_seconds("00:15:00", "x") == 900
    assert timespan_seconds("1.00:00:00.5", "x") == 86400.5
    assert iso_seconds("PT1M", "x") == 60 and iso_seconds("PT1H30S", "x") == 3630
    for bad in ("15 minutes", "00:15", ""):
        with pytest.raises(LimitsError, match=r"host\.json functionTimeout"):
            timespan_seconds(bad, "functionTimeout")
    with pytest.raises(LimitsError, match="LockDuration"):
        iso_seconds("P1D", "LockDuration")


def test_function_limits_read_host_json_and_settings() -> None:
    host = {"functionTimeout": "00:15:00", "extensions": {"serviceBus": {"maxConcurrentCalls": 3}}}
    limits = function_limits(host, {"SCORING_READ_TIMEOUT_SECONDS": "12", "SAS_TTL_MINUTES": "90"}, 600)
    assert (limits.sas_ttl_minutes, limits.result_deadline_minutes) == (90, 60)
    assert (limits.max_concurrent_calls, limits.function_timeout_seconds, limits.lock_renewal_seconds) == (3, 900, 300)
    assert (limits.connect_timeout_seconds, limits.read_timeout_seconds) == (5, 12)
    with pytest.raises(SettingsError, match="SCORING_CONNECT_TIMEOUT_SECONDS"):
        function_limits(host, {"SCORING_CONNECT_TIMEOUT_SECONDS": "soon"}, 600)


def test_start_up_check_fails_fast_naming_the_settings(tmp_path: Path) -> None:
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"functionTimeout": "00:10:00", "extensions": {"serviceBus": {}}}))
    with pytest.raises(LimitsError) as raised:
        check_startup({}, host)
    message = str(raised.value)
    assert "maxAutoLockRenewalDuration (300 s)" in message and "writer's copy" in message
    host.write_text(
        json.dumps(
            {"functionTimeout": "00:15:00", "extensions": {"serviceBus": {"maxAutoLockRenewalDuration": "00:15:00"}}}
        )
    )
    assert check_startup({}, host).function_timeout_seconds == 900
