"""Timer trigger: fires a function on its NCRONTAB schedule, with ``runOnStartup``, past-due detection and the
schedule status kept (``useMonitor``) in blob ``azure-webjobs-hosts/timers/<host id>/<function id>/status``."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter
from azure.storage.blob import ContainerClient

from .host_storage import function_id, hosts_container
from .indexing import FunctionSpec
from .invoker import Invoker
from .ncrontab import CronSchedule, Schedule, parse
from .settings import Connection

logger = logging.getLogger(__name__)

# The runtime turns monitoring off for schedules that fire more often than once a minute.
_MONITOR_MIN_INTERVAL = timedelta(minutes=1)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class TimerTrigger:
    def __init__(
        self,
        spec: FunctionSpec,
        invoker: Invoker,
        stop: threading.Event,
        host_storage: Connection | None,
        host_id: str,
    ) -> None:
        self.spec = spec
        self._invoker = invoker
        self._stop = stop
        self._host_storage = host_storage
        self._status_blob = f"timers/{host_id}/{function_id(spec.name)}/status"
        self.schedule: Schedule = parse(str(spec.trigger["schedule"]))
        self._monitor = self._use_monitor()
        self._thread = threading.Thread(target=self._run, name=f"timer-{spec.name}", daemon=True)

    def _use_monitor(self) -> bool:
        setting = self.spec.trigger.get("useMonitor")
        if setting is not None:
            return bool(setting) and self._host_storage is not None
        now = datetime.now(UTC)
        first = self.schedule.next_after(now)
        second = self.schedule.next_after(first) if first else None
        frequent = first is not None and second is not None and second - first < _MONITOR_MIN_INTERVAL
        return not frequent and self._host_storage is not None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        container = hosts_container(self._host_storage) if self._monitor and self._host_storage else None
        try:
            self._loop(container)
        except Exception:
            logger.exception("timer trigger for '%s' stopped", self.spec.name)
        finally:
            if container is not None:
                container.close()

    def _loop(self, container: ContainerClient | None) -> None:
        status = self._read_status(container)
        if self._stop.is_set():
            return
        now = datetime.now(UTC)
        last_next = _parse_iso(status.get("Next")) if status else None
        if last_next is not None and last_next < now - timedelta(seconds=1):
            logger.info("timer '%s' is past due (missed %s)", self.spec.name, last_next.isoformat())
            status = self._fire(container, status, last_next, past_due=True)
        elif self.spec.trigger.get("runOnStartup"):
            status = self._fire(container, status, now, past_due=False)
        while not self._stop.is_set():
            due = self.schedule.next_after(datetime.now(UTC))
            if due is None:
                logger.warning("timer '%s': schedule '%s' never fires", self.spec.name, self.schedule.expression)
                return
            if self._stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
                return
            late = datetime.now(UTC) - due
            status = self._fire(container, status, due, past_due=late > timedelta(seconds=1))

    def _fire(
        self, container: ContainerClient | None, status: dict[str, Any] | None, occurrence: datetime, past_due: bool
    ) -> dict[str, Any] | None:
        next_due = self.schedule.next_after(max(occurrence, datetime.now(UTC)))
        payload = {
            "Schedule": {"AdjustForDST": isinstance(self.schedule, CronSchedule)},
            "ScheduleStatus": status if self._monitor else None,
            "IsPastDue": past_due,
        }
        request = TimerRequestConverter.decode(meta.Datum(json.dumps(payload), "json"), trigger_metadata={})
        self._invoker.invoke(self.spec, request, reason="Timer fired" if not past_due else "Timer fired (past due)")
        new_status = {"Last": _iso(occurrence), "Next": _iso(next_due), "LastUpdated": _iso(datetime.now(UTC))}
        self._write_status(container, new_status)
        return new_status

    def _read_status(self, container: ContainerClient | None) -> dict[str, Any] | None:
        if container is None:
            return None
        try:
            document = json.loads(container.download_blob(self._status_blob).readall())
        except ResourceNotFoundError:
            return None
        except ValueError:
            logger.warning("timer '%s': unreadable schedule status; starting afresh", self.spec.name)
            return None
        return document if isinstance(document, dict) else None

    def _write_status(self, container: ContainerClient | None, status: dict[str, Any]) -> None:
        if container is None:
            return
        try:
            container.upload_blob(self._status_blob, json.dumps(status), overwrite=True)
        except Exception as exc:  # noqa: BLE001 - the schedule keeps running without its status
            logger.warning("timer '%s': could not save schedule status: %s", self.spec.name, exc)
