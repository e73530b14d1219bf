"""host.json Service Bus options and the trigger-metadata formats the worker's converters read."""

from __future__ import annotations

import threading
import typing
from datetime import timedelta
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions import meta

from devstack.functions_host.indexing import FunctionSpec
from devstack.functions_host.invoker import Invoker
from devstack.functions_host.servicebus_message import _timespan
from devstack.functions_host.servicebus_trigger import ServiceBusTrigger, parse_timespan, servicebus_options
from shared.config import Connection


def test_v5_names_win_and_defaults_apply() -> None:
    options = servicebus_options(
        {"extensions": {"serviceBus": {"autoCompleteMessages": False, "maxConcurrentCalls": 3,
                                       "maxAutoLockRenewalDuration": "00:10:00", "sessionIdleTimeout": "00:00:05"}}},
        cpu_count=2,
    )  # fmt: skip
    assert options.auto_complete is False
    assert options.max_concurrent_calls == 3
    assert options.max_lock_renewal == 600
    assert options.session_idle_timeout == 5
    defaults = servicebus_options({}, cpu_count=2)
    assert defaults.auto_complete is True
    assert defaults.max_lock_renewal == 300
    assert defaults.max_concurrent_calls == 8


def test_legacy_message_handler_options() -> None:
    options = servicebus_options(
        {"extensions": {"serviceBus": {"messageHandlerOptions": {"autoComplete": False, "maxConcurrentCalls": 2}}}}, 4
    )
    assert (options.auto_complete, options.max_concurrent_calls) == (False, 2)


def test_timespans() -> None:
    assert parse_timespan("1.00:00:30", "x") == 86430
    assert parse_timespan(12, "x") == 12
    with pytest.raises(ValueError, match="not a TimeSpan"):
        parse_timespan("five minutes", "x")


@pytest.mark.parametrize("delta", [timedelta(minutes=5), timedelta(hours=23, seconds=59), timedelta(days=14)])
def test_time_to_live_format_is_readable_by_the_worker_converter(delta: timedelta) -> None:
    text = _timespan(delta)
    assert text is not None
    assert meta._BaseConverter._parse_timedelta(text) == delta


def _batch_trigger(
    annotation: object, host_json: dict[str, object] | None = None, **binding: object
) -> ServiceBusTrigger:
    spec = FunctionSpec(
        name="batch", trigger={"type": "serviceBusTrigger", "name": "msgs", "queueName": "q", "cardinality": "MANY",
                               "connection": "ServiceBus", **binding},
        outputs=(), user_function=lambda msgs: None, parameters=("msgs",), is_async=False,
        connections={"ServiceBus": Connection(name="ServiceBus", connection_string="Endpoint=sb://x/")},
        trigger_annotation=annotation,
    )  # fmt: skip
    options = servicebus_options(host_json or {}, cpu_count=2)
    return ServiceBusTrigger(spec, Invoker(Path(".")), threading.Event(), options)


def test_a_batch_trigger_runs_one_loop_and_needs_the_annotation_the_worker_accepts() -> None:
    """As the runtime's batch listener: one receive loop whatever maxConcurrentCalls says; and, as the Python
    worker, no load for a batch annotated ``list[...]``, which azure.functions' converter does not accept."""
    trigger = _batch_trigger(typing.List[func.ServiceBusMessage])  # noqa: UP006
    assert trigger.many and len(trigger._threads) == 1
    with pytest.raises(ValueError, match=r"typing\.List\[func\.ServiceBusMessage\]"):
        _batch_trigger(list[func.ServiceBusMessage])


def test_a_batch_trigger_with_sessions_takes_max_concurrent_sessions_at_once() -> None:
    """The documented local difference: the runtime's batch loop holds one session at a time per instance; the
    local host runs ``maxConcurrentSessions`` session loops for a batch function too (functions host README)."""
    host_json: dict[str, object] = {"extensions": {"serviceBus": {"maxConcurrentSessions": 5}}}
    trigger = _batch_trigger(typing.List[func.ServiceBusMessage], host_json, isSessionsEnabled=True)  # noqa: UP006
    assert trigger.many and trigger.sessions and len(trigger._threads) == 5
