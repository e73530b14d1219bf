"""``FunctionsHost``: loads the settings and the app, indexes it, starts one component per trigger and stops them.

Start-up order: local.settings.json ``Values`` into the environment (never overriding variables already set),
host.json, import + index (failing fast with the function and setting named), then triggers, then the HTTP
server. ``stop()`` stops pollers and receivers, lets running invocations finish for a short grace period and
closes the SDK clients each component owns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .blob_trigger import BlobTrigger, blob_trigger_options
from .host_storage import host_connection, host_id
from .http_routes import build_routes, load_host_key
from .http_trigger import HttpTriggers
from .indexing import FunctionSpec, IndexingError, index_app
from .invoker import Invoker
from .servicebus_trigger import ServiceBusTrigger, parse_timespan, servicebus_options
from .settings import SettingsError, apply_to_environment, load_host_json, load_local_settings
from .timer_trigger import TimerTrigger

logger = logging.getLogger(__name__)


class _Component(Protocol):
    def start(self) -> None: ...

    def join(self, timeout: float) -> None: ...


@dataclass(frozen=True)
class HostOptions:
    script_root: Path = Path(".")
    host: str = "127.0.0.1"
    port: int = 7071
    data_dir: Path = field(default_factory=lambda: Path(".devstack") / "functions-host")
    blob_poll_interval: float = 2.0
    # With an access log (storage_access_logs: blob service URL -> its log), the full listing's interval.
    blob_scan_interval: float = 30.0
    storage_access_logs: tuple[tuple[str, Path], ...] = ()
    shutdown_grace: float = 10.0


class FunctionsHost:
    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.functions: list[FunctionSpec] = []
        self.key_source = ""
        self._stop = threading.Event()
        self._components: list[_Component] = []
        self._http: HttpTriggers | None = None
        self._invoker = Invoker(options.script_root)
        self.host_json: dict[str, Any] = {}

    @property
    def url(self) -> str:
        port = self._http.port if self._http else self.options.port
        return f"http://{self.options.host}:{port}"

    def start(self) -> None:
        """Index the app and start every trigger; raises IndexingError/SettingsError/ValueError on bad config."""
        root = self.options.script_root
        apply_to_environment(load_local_settings(root))
        self.host_json = load_host_json(root)
        if self.host_json.get("functionTimeout") not in (None, "", "-1", -1):  # -1 means no limit
            self._invoker.function_timeout = parse_timespan(self.host_json["functionTimeout"], "functionTimeout")
        self.functions = index_app(root)
        environ = os.environ
        identity = host_id(root, environ)
        cpus = os.cpu_count() or 1
        sb_options = servicebus_options(self.host_json, cpus)
        blob_options = blob_trigger_options(
            self.host_json,
            self.options.blob_poll_interval,
            cpus,
            scan_interval=self.options.blob_scan_interval,
            access_logs=dict(self.options.storage_access_logs),
            state_dir=self.options.data_dir,
        )
        for spec in self.functions:
            kind = spec.trigger_type
            if kind == "timerTrigger":
                storage = None
                if environ.get("AzureWebJobsStorage") or environ.get("AzureWebJobsStorage__blobServiceUri"):
                    storage = host_connection(environ, f"timer function '{spec.name}'")
                self._components.append(TimerTrigger(spec, self._invoker, self._stop, storage, identity))
            elif kind == "blobTrigger":
                if str(spec.trigger.get("source", "")).lower() == "eventgrid":
                    logger.info(
                        "function '%s' uses an Event Grid blob trigger: the local host runs it for blobs written "
                        "after its first start, found through the storage access log or a listing",
                        spec.name,
                    )
                storage = host_connection(environ, f"blob trigger function '{spec.name}'")
                self._components.append(BlobTrigger(spec, self._invoker, self._stop, storage, identity, blob_options))
            elif kind == "serviceBusTrigger":
                self._components.append(ServiceBusTrigger(spec, self._invoker, self._stop, sb_options))
        routes = build_routes(self.functions)
        http_section = (self.host_json.get("extensions") or {}).get("http") or {}
        prefix = str(http_section.get("routePrefix", "api"))
        key, self.key_source = load_host_key(self.options.data_dir)
        self._http = HttpTriggers(routes, self._invoker, self.options.host, self.options.port, prefix, key, identity)
        for component in self._components:
            component.start()
        self._http.start()

    def ready_line(self) -> str:
        names = ", ".join(spec.name for spec in self.functions)
        return (
            f"functions host ready on {self.url} ({len(self.functions)} functions: {names}; "
            f"host key from {self.key_source})"
        )

    def stop(self) -> None:
        logger.info("functions host stopping")
        self._stop.set()
        if self._http is not None:
            self._http.stop(self.options.shutdown_grace)
        deadline = time.monotonic() + self.options.shutdown_grace
        for component in self._components:
            component.join(max(0.1, deadline - time.monotonic()))
        self._invoker.close()
        lingering = sorted(t.name for t in threading.enumerate() if t.daemon and t.is_alive() and "-" in t.name)
        if lingering:
            logger.warning("still busy after the grace period (abandoned at exit): %s", ", ".join(lingering))
        logger.info("functions host stopped")


__all__ = ["FunctionsHost", "HostOptions", "IndexingError", "SettingsError"]
