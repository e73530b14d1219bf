"""The pipeline's metrics, on the process's meter provider (no-ops when telemetry is off).

Counters and the latency histogram are recorded where the event happens (``pipeline``); Service Bus depths
are observed from Service Bus itself (``ServiceBusAdministrationClient`` runtime properties), never from our
own ledger, through :func:`observe_subscription_depths`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

logger = logging.getLogger(__name__)

_METER = metrics.get_meter("async_inference")

files_submitted = _METER.create_counter("inference.files.submitted", unit="{file}", description="files submitted")
files_scored = _METER.create_counter("inference.files.scored", unit="{file}", description="outputs written")
files_failed = _METER.create_counter(
    "inference.files.failed", unit="{file}", description="error records written, by error code"
)
rows_scored = _METER.create_counter("inference.rows.scored", unit="{row}", description="rows scored")
rows_failed = _METER.create_counter("inference.rows.failed", unit="{row}", description="rows left out as invalid")
drop_to_output = _METER.create_histogram(
    "inference.file.duration",
    unit="s",
    description="from the trigger picking a file up to its output or error record being written",
)
endpoint_responses = _METER.create_counter(
    "inference.endpoint.responses", unit="{response}", description="scoring endpoint answers by HTTP status"
)
endpoint_retries = _METER.create_counter(
    "inference.endpoint.retries", unit="{retry}", description="requests rescheduled because the endpoint was busy"
)


@dataclass(frozen=True)
class SubscriptionDepth:
    topic: str
    subscription: str
    active: int
    dead_lettered: int


DepthSource = Callable[[], Iterable[SubscriptionDepth]]


def observe_subscription_depths(source: DepthSource) -> None:
    """Registers gauges read from ``source`` at each metric export (a failing read skips that export)."""

    def read() -> list[SubscriptionDepth]:
        try:
            return list(source())
        except Exception as exc:  # noqa: BLE001 - a metrics callback must never raise into the SDK's thread
            logger.warning("Service Bus depths unavailable for metrics: %s", exc)
            return []

    def active(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(d.active, {"topic": d.topic, "subscription": d.subscription}) for d in read()]

    def dead_lettered(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(d.dead_lettered, {"topic": d.topic, "subscription": d.subscription}) for d in read()]

    _METER.create_observable_gauge("servicebus.subscription.active_messages", callbacks=[active], unit="{message}")
    _METER.create_observable_gauge(
        "servicebus.subscription.dead_lettered_messages", callbacks=[dead_lettered], unit="{message}"
    )
