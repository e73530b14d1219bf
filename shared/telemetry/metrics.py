"""The pipeline's metrics, on the process's meter provider (no-ops when telemetry is off).

Counters and the latency histogram are recorded where the event happens (``pipeline``); Service Bus depths
are observed from Service Bus itself (``ServiceBusAdministrationClient`` runtime properties), never from our
own ledger, through :func:`observe_subscription_depths`.
"""

from __future__ import annotations

import logging
import threading
import time
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


class SharedRead:
    """One read of ``source`` serves every gauge of one export: the gauges' callbacks run one after the other, so
    a read younger than ``fresh_seconds`` is handed out again instead of asking Service Bus twice. A failing
    read gives no depths for that export (a metrics callback must never raise into the SDK's thread)."""

    def __init__(
        self, source: DepthSource, fresh_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self._fresh = fresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._depths: list[SubscriptionDepth] = []

    def __call__(self) -> list[SubscriptionDepth]:
        with self._lock:
            now = self._clock()
            if self._at is None or now - self._at >= self._fresh:
                try:
                    self._depths = list(self._source())
                except Exception as exc:  # noqa: BLE001 - see the class docstring
                    logger.warning("Service Bus depths unavailable for metrics: %s", exc)
                    self._depths = []
                self._at = now
            return self._depths


def observe_subscription_depths(source: DepthSource) -> None:
    """Registers gauges read from ``source`` at each metric export (one read per export)."""
    read = SharedRead(source)

    def active(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(d.active, {"topic": d.topic, "subscription": d.subscription}) for d in read()]

    def dead_lettered(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(d.dead_lettered, {"topic": d.topic, "subscription": d.subscription}) for d in read()]

    _METER.create_observable_gauge("servicebus.subscription.active_messages", callbacks=[active], unit="{message}")
    _METER.create_observable_gauge(
        "servicebus.subscription.dead_lettered_messages", callbacks=[dead_lettered], unit="{message}"
    )
