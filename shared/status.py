"""The status page's data: files in flight by stage, recent files' timelines, throughput and latency per minute
over the last hour, errors by code, Service Bus depths and each route's endpoint health.

Per-file stages come from the ledger: one listing of its records, whose blob metadata carries state and
times (:meth:`shared.ledger.LedgerRecord.listing_metadata`); only the few recent files shown in full are read
(and kept per ETag, so a refresh re-reads only what changed). Queue and dead-letter depths come from Service
Bus itself (:class:`DepthReader`, the administration client in Azure and locally), endpoint health from a
probe of each route (:class:`HealthProbe`).
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.contracts import parse_iso
from shared.ledger import RECORDS, Ledger, LedgerRecord
from shared.ports import BlobInfo, BlobNotFound, BlobStore
from shared.telemetry.metrics import SubscriptionDepth

logger = logging.getLogger(__name__)

STAGES = ("uploaded", "submitted", "accepted", "scored", "written")
RECENT_FILES = 12
ERRORS_LISTED = 5
WINDOW = timedelta(hours=1)
ACTIVE = timedelta(minutes=1)


@dataclass(frozen=True)
class Timeline:
    request_id: str
    input_name: str
    model: str
    state: str
    attempt: int
    times: dict[str, str | None]  # stage -> ISO time, in STAGES order
    rows_scored: int | None = None
    rows_failed: int | None = None
    error_code: str | None = None
    output_location: str | None = None


@dataclass(frozen=True)
class Minute:
    start: str
    files: int
    failed: int
    p50_seconds: float | None
    p95_seconds: float | None


@dataclass(frozen=True)
class ErrorGroup:
    code: str
    count: int
    latest: list[tuple[str, str]]  # (request id, input name) of the latest few


@dataclass(frozen=True)
class EndpointHealth:
    model: str
    healthy: bool
    detail: str
    http_status: int | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class Snapshot:
    generated_at: str
    totals: dict[str, int]
    in_flight: dict[str, int]
    recent: list[Timeline]
    minutes: list[Minute]
    errors: list[ErrorGroup]
    subscriptions: list[SubscriptionDepth]
    subscriptions_error: str | None
    endpoints: list[EndpointHealth]
    window_files: int = 0
    window_p50_seconds: float | None = None
    last_change: str | None = None  # the latest ledger update

    @property
    def flowing(self) -> bool:
        """Files in flight, or a file finished within the last :data:`ACTIVE` (the page then refreshes often)."""
        if any(self.in_flight.values()):
            return True
        if not self.last_change:
            return False
        return parse_iso(self.generated_at) - parse_iso(self.last_change) < ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DepthReader(Protocol):
    def depths(self) -> list[SubscriptionDepth]: ...


class HealthProbe(Protocol):
    def probe(self, model: str) -> EndpointHealth: ...


@dataclass(frozen=True)
class _Listed:
    request_id: str
    etag: str
    meta: dict[str, str]

    def time(self, key: str) -> datetime | None:
        value = self.meta.get(key)
        try:
            return parse_iso(value) if value else None
        except ValueError:
            return None


class _RecordCache:
    """Full records and upload times of the files shown, by ETag; bounded, shared by this process's calls."""

    def __init__(self, size: int = 4096) -> None:
        self._records: OrderedDict[str, tuple[str, LedgerRecord]] = OrderedDict()
        self._uploaded: OrderedDict[str, str | None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def record(self, ledger: Ledger, listed: _Listed) -> LedgerRecord | None:
        with self._lock:
            known = self._records.get(listed.request_id)
        if known is not None and known[0] == listed.etag:
            return known[1]
        record, etag = ledger.read(listed.request_id)
        if record is not None and etag is not None:
            with self._lock:
                self._records[listed.request_id] = (etag, record)
                while len(self._records) > self._size:
                    self._records.popitem(last=False)
        return record

    def uploaded(self, blobs: BlobStore, record: LedgerRecord) -> str | None:
        with self._lock:
            if record.request_id in self._uploaded:
                return self._uploaded[record.request_id]
        try:
            created = blobs.properties(record.input_container, record.input_name).created_at
        except BlobNotFound:
            created = None
        value = created.isoformat(timespec="milliseconds").replace("+00:00", "Z") if created else None
        with self._lock:
            self._uploaded[record.request_id] = value
            while len(self._uploaded) > self._size:
                self._uploaded.popitem(last=False)
        return value


_CACHE = _RecordCache()


def _listed(items: Iterable[BlobInfo]) -> list[_Listed]:
    out = []
    for info in items:
        if not info.name.endswith(".json"):
            continue
        out.append(_Listed(info.name[len(RECORDS) : -len(".json")], info.etag, dict(info.metadata)))
    return out


def timeline(record: LedgerRecord, uploaded: str | None) -> Timeline:
    terminal = record.state.value in ("succeeded", "failed")
    times = {
        "uploaded": uploaded,
        "submitted": record.submitted_at,
        "accepted": record.accepted_at,
        # completed_at is when the endpoint finished the file (the result's time) once it was accepted
        "scored": record.completed_at if record.accepted_at else None,
        "written": record.updated_at if terminal else None,
    }
    return Timeline(
        request_id=record.request_id,
        input_name=record.input_name,
        model=record.model,
        state=record.state.value,
        attempt=record.attempt,
        times=times,
        rows_scored=record.rows_scored,
        rows_failed=record.rows_failed,
        error_code=record.error_code,
        output_location=record.output_location,
    )


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def collect(
    *,
    blobs: BlobStore,
    ledger: Ledger,
    ledger_container: str,
    depths: DepthReader,
    probe: HealthProbe,
    models: Iterable[str],
    writer_subscription: str,
    now: datetime,
    recent: int = RECENT_FILES,
) -> Snapshot:
    listed = _listed(blobs.list(ledger_container, RECORDS))
    totals = Counter(item.meta.get("state", "unknown") for item in listed)

    try:
        subscriptions, subscriptions_error = depths.depths(), None
    except Exception as exc:  # noqa: BLE001 - the page shows why Service Bus could not be read
        logger.warning("status: Service Bus depths unavailable: %s", exc)
        subscriptions, subscriptions_error = [], f"{type(exc).__name__}: {exc}"[:300]
    writer_backlog = sum(d.active for d in subscriptions if d.subscription == writer_subscription)
    in_flight = {
        # A small file's "accepted" is recorded with its result (shared.score), so it stays "submitted" until written.
        "submitted, not scored yet (small files: until written)": totals.get("submitted", 0),
        "accepted, being scored (larger files)": totals.get("accepted", 0),
        "scored, waiting to be written": writer_backlog,
    }

    by_update = sorted(listed, key=lambda item: item.meta.get("updated_at", ""), reverse=True)
    timelines = []
    for item in by_update[:recent]:
        record = _CACHE.record(ledger, item)
        if record is not None:
            timelines.append(timeline(record, _CACHE.uploaded(blobs, record)))

    since = now - WINDOW
    buckets: dict[datetime, list[float]] = defaultdict(list)
    failed_per_minute: Counter[datetime] = Counter()
    for item in listed:
        if item.meta.get("state") not in ("succeeded", "failed"):
            continue
        done, submitted = item.time("updated_at"), item.time("submitted_at")
        if done is None or done < since:
            continue
        minute = done.replace(second=0, microsecond=0)
        buckets[minute].append(max(0.0, (done - submitted).total_seconds()) if submitted else 0.0)
        if item.meta.get("state") == "failed":
            failed_per_minute[minute] += 1
    first_minute = since.replace(second=0, microsecond=0) + timedelta(minutes=1)
    minutes = []
    for step in range(60):
        start = first_minute + timedelta(minutes=step)
        values = sorted(buckets.get(start, []))
        minutes.append(
            Minute(
                start=start.isoformat(timespec="seconds").replace("+00:00", "Z"),
                files=len(values),
                failed=failed_per_minute.get(start, 0),
                p50_seconds=_percentile(values, 0.5),
                p95_seconds=_percentile(values, 0.95),
            )
        )
    window_latencies = sorted(v for values in buckets.values() for v in values)

    failed = [item for item in by_update if item.meta.get("state") == "failed"]
    codes = Counter(item.meta.get("error_code", "unknown") for item in failed)
    errors = []
    for code, count in codes.most_common():
        latest = []
        for item in [i for i in failed if i.meta.get("error_code", "unknown") == code][:ERRORS_LISTED]:
            record = _CACHE.record(ledger, item)
            latest.append((item.request_id, record.input_name if record else "?"))
        errors.append(ErrorGroup(code=code, count=count, latest=latest))

    return Snapshot(
        generated_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        totals=dict(sorted(totals.items())),
        in_flight=in_flight,
        recent=timelines,
        minutes=minutes,
        errors=errors,
        subscriptions=subscriptions,
        subscriptions_error=subscriptions_error,
        endpoints=[probe.probe(model) for model in models],
        window_files=len(window_latencies),
        window_p50_seconds=_percentile(window_latencies, 0.5),
        last_change=by_update[0].meta.get("updated_at") if by_update else None,
    )
