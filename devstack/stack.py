"""The local stack: settings (ports, base dir, model routes) and its services, in dependency order.

``LocalStack(settings)`` is the API used by ``python -m devstack`` and by the test fixture: ``up()``,
``down()``, ``statuses()``; its settings expose the connection strings and URLs a client needs.

Order: Azurite (blob/queue/table) -> Service Bus emulator -> one scoring server (azmlinfsrv) per model route
-> local functions host, each healthy before the next starts. The default route serves the example model in
``scoring/model``; each ``--model NAME=DIR`` adds route NAME with its own server (``scoring-NAME``) on its own
port. The routes file and the emulator config that follow from the routes are written into the base dir
(:mod:`devstack.routes`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from devstack import azurite, gunicorn_loopback, procs
from devstack.azurite import DEV_ACCOUNT as DEV_ACCOUNT  # re-exported for scripts that know the stack
from devstack.azurite import DEV_KEY as DEV_KEY
from devstack.azurite import command as azurite_command
from devstack.ports import LOOPBACK, free_port
from devstack.routes import ModelOption, effective_routes, write_json, write_stack_files
from devstack.runner import Runner, ServiceSpec, ServiceStatus, StackError
from shared.contracts import DEFAULT_MODEL
from shared.routes import ROUTES_FILE_SETTING, Route, RoutesError, load_routes, setting_suffix

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]

SB_KEY_NAME = "RootManageSharedAccessKey"
SB_KEY = "SAS_KEY_VALUE"

CONTAINERS = ("input", "output", "ledger", "results")
RESULT_TOPIC = "inference-results"
RESULTS_CONTAINER = "results"

SERVICEBUS_READY = r"servicebus emulator ready"
FUNCTIONS_READY = r"functions host ready on "
FUNCTIONS_KEY_ENV = "FUNCTIONS_HOST_KEY"
BLOB_POLL_SECONDS = 0.2  # listing interval of a blob trigger that has no access log to follow
BLOB_SCAN_SECONDS = 30.0  # safety-net listing interval of one that follows Azurite's access log
STATE_FILE = "stack.json"  # the settings of the last `up`, so status/down/demo find the same ports

# setting field -> (environment variable, command-line flag)
PORT_SETTINGS: dict[str, tuple[str, str]] = {
    "blob_port": ("DEVSTACK_BLOB_PORT", "--blob-port"),
    "queue_port": ("DEVSTACK_QUEUE_PORT", "--queue-port"),
    "table_port": ("DEVSTACK_TABLE_PORT", "--table-port"),
    "servicebus_port": ("DEVSTACK_SERVICEBUS_PORT", "--servicebus-port"),
    "scoring_port": ("DEVSTACK_SCORING_PORT", "--scoring-port"),
    "functions_port": ("DEVSTACK_FUNCTIONS_PORT", "--functions-port"),
}
BASE_DIR_ENV = "DEVSTACK_BASE_DIR"


@dataclass(frozen=True)
class ExtraModel:
    """A route added with ``--model NAME=DIR``, served by its own scoring server on ``port``."""

    name: str
    model_dir: Path
    port: int

    @property
    def service(self) -> str:
        return f"scoring-{self.name}"

    @property
    def scoring_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/score"


@dataclass(frozen=True)
class StackSettings:
    """Where the stack keeps its data and which loopback ports it uses."""

    base_dir: Path
    repo: Path = REPO
    blob_port: int = 10000
    queue_port: int = 10001
    table_port: int = 10002
    servicebus_port: int = 5673
    scoring_port: int = 5001
    functions_port: int = 7071
    models: tuple[ExtraModel, ...] = ()  # routes added with --model, beside the declared ones
    # Extra app settings for the scoring server and the functions host (they win over local.settings.json),
    # e.g. a small MAX_INPUT_BYTES or short RESULT_DEADLINE_MINUTES for tests; not saved in stack.json.
    extra_settings: Mapping[str, str] = field(default_factory=dict)
    # Azurite writes one access-log line per request into its log: the functions host follows it to find new
    # blobs without listing the input container, and the benchmark counts storage operations from it.
    storage_access_log: bool = True

    @classmethod
    def load(
        cls,
        base_dir: Path | None = None,
        ports: Mapping[str, int | None] | None = None,
        models: Sequence[ModelOption] | None = None,
    ) -> StackSettings:
        """Flags (``base_dir``/``ports``) win over ``DEVSTACK_*`` variables, which win over the last ``up``.

        ``models`` replaces the saved ``--model`` routes (``None`` keeps them); a route keeps its saved port.
        """
        env_base = os.environ.get(BASE_DIR_ENV)
        base = (base_dir or (Path(env_base) if env_base else REPO / ".devstack")).resolve()
        settings = cls._saved(base) or cls(base_dir=base)
        if models is not None:
            saved = {m.name: m.port for m in settings.models}
            taken: set[int] = set()
            extra = []
            for model in models:
                port = saved.get(model.name) or _free_port_except(taken)
                taken.add(port)
                extra.append(ExtraModel(model.name, model.model_dir, port))
            settings = replace(settings, models=tuple(extra))
        for name, (variable, option) in PORT_SETTINGS.items():
            raw = os.environ.get(variable)
            given = (ports or {}).get(name)
            if given is not None:
                settings = replace(settings, **{name: _port(str(given), option)})  # type: ignore[arg-type]
            elif raw:
                settings = replace(settings, **{name: _port(raw, variable)})  # type: ignore[arg-type]
        return settings

    @classmethod
    def _saved(cls, base: Path) -> StackSettings | None:
        try:
            data = json.loads((base / STATE_FILE).read_text())
            settings = cls(base_dir=base)
            for name in PORT_SETTINGS:
                settings = replace(settings, **{name: int(data[name])})  # type: ignore[arg-type]
            models = tuple(ExtraModel(m["name"], Path(m["model_dir"]), int(m["port"])) for m in data.get("models", []))
            settings = replace(settings, models=models)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring %s: %s", base / STATE_FILE, exc)
            return None
        return settings

    def save(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        data: dict[str, object] = {k: v for k, v in asdict(self).items() if k in PORT_SETTINGS}
        data["models"] = [{"name": m.name, "model_dir": str(m.model_dir), "port": m.port} for m in self.models]
        (self.base_dir / STATE_FILE).write_text(json.dumps(data, indent=2) + "\n")

    # ------------------------------------------------------------------ endpoints

    @property
    def blob_endpoint(self) -> str:
        return azurite.endpoint(self.blob_port)

    @property
    def queue_endpoint(self) -> str:
        return azurite.endpoint(self.queue_port)

    @property
    def table_endpoint(self) -> str:
        return azurite.endpoint(self.table_port)

    @property
    def storage_connection_string(self) -> str:
        return azurite.connection_string(self.blob_port, self.queue_port, self.table_port)

    @property
    def servicebus_connection_string(self) -> str:
        return (
            f"Endpoint=sb://{LOOPBACK}:{self.servicebus_port};SharedAccessKeyName={SB_KEY_NAME};"
            f"SharedAccessKey={SB_KEY};UseDevelopmentEmulator=true"
        )

    @property
    def servicebus_data_dir(self) -> Path:
        return self.base_dir / "servicebus"

    @property
    def servicebus_ca_file(self) -> Path:
        """The emulator's local CA certificate: what an administration client must trust (created on first start)."""
        return self.servicebus_data_dir / "ca.pem"

    @property
    def servicebus_ca_bundle(self) -> Path:
        """Public CAs plus the emulator's CA, for ``REQUESTS_CA_BUNDLE`` (which replaces the default CAs)."""
        return self.servicebus_data_dir / "ca-bundle.pem"

    @property
    def scoring_url(self) -> str:
        return f"http://{LOOPBACK}:{self.scoring_port}/score"

    @property
    def functions_url(self) -> str:
        return f"http://{LOOPBACK}:{self.functions_port}"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def azurite_log(self) -> Path:
        """Azurite's output (the runner's log of the service), with one access-log line per request."""
        return self.log_dir / "azurite.log"

    @property
    def functions_data_dir(self) -> Path:
        return self.base_dir / "functions-host"

    def functions_key(self) -> str | None:
        """The local host's key: ``FUNCTIONS_HOST_KEY``, else the key file it generated on first start."""
        if os.environ.get(FUNCTIONS_KEY_ENV):
            return os.environ[FUNCTIONS_KEY_ENV]
        try:
            return (self.functions_data_dir / "host.key").read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    @property
    def model_dir(self) -> Path:
        return self.repo / "scoring" / "model"

    @property
    def telemetry_dir(self) -> Path:
        return self.base_dir / "telemetry"

    def telemetry_settings(self) -> dict[str, str]:
        """Spans and metrics of the function app and the scoring server kept as JSON lines on disk
        (``shared.telemetry.setup``), exported every half second so they can be read while files flow."""
        return {
            "TELEMETRY_DIR": str(self.telemetry_dir),
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        }

    @property
    def routes_file(self) -> Path:
        return self.base_dir / "models.json"

    @property
    def servicebus_config(self) -> Path:
        return self.base_dir / "servicebus-entities.json"

    def routes(self) -> tuple[Route, ...]:
        """The declared routes (``models.json`` of the repository) plus the ``--model`` ones."""
        try:
            declared = load_routes(self.repo / "models.json")
            routes = effective_routes(declared, [ModelOption(m.name, m.model_dir) for m in self.models])
        except (RoutesError, ValueError) as exc:
            raise StackError(str(exc)) from exc
        unserved = [r.model for r in routes if r.model != DEFAULT_MODEL and r.model not in self.model_names]
        if unserved:
            raise StackError(
                f"models.json declares route(s) {', '.join(unserved)}; give each its model: "
                + " ".join(f"--model {name}=MODEL_DIR" for name in unserved)
            )
        return routes

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def scoring_urls(self) -> dict[str, str]:
        """Route -> the scoring URL of the server that serves it."""
        return {DEFAULT_MODEL: self.scoring_url, **{m.name: m.scoring_url for m in self.models}}

    @property
    def client_settings_file(self) -> Path:
        return self.base_dir / "client.settings.json"

    def client_settings(self) -> dict[str, str]:
        """What ``python -m client --settings FILE`` needs to reach this stack, every route's scoring URI included."""
        return {
            "DataStorage": self.storage_connection_string,
            "ServiceBus": self.servicebus_connection_string,
            "SCORING_URI": self.scoring_url,
            **{f"SCORING_URI__{setting_suffix(m.name)}": m.scoring_url for m in self.models},
            "FUNCTIONS_URL": self.functions_url,
        }

    def status_url(self) -> str | None:
        """The function app's status page with the host key (None before the host made its key)."""
        key = self.functions_key()
        return f"{self.functions_url}/api/status?code={key}" if key else None

    def function_app_settings(self) -> dict[str, str]:
        """The app settings that depend on this stack's ports and routes (they override local.settings.json)."""
        return {
            "AzureWebJobsStorage": self.storage_connection_string,
            "DataStorage": self.storage_connection_string,
            "ServiceBus": self.servicebus_connection_string,
            "SCORING_URI": self.scoring_url,
            # The status page reads Service Bus depths with the administration client, over the emulator's TLS;
            # the bundle keeps the public CAs too, since this variable replaces the default trust store.
            "REQUESTS_CA_BUNDLE": str(self.servicebus_ca_bundle),
            **self.telemetry_settings(),
            ROUTES_FILE_SETTING: str(self.routes_file),
            **{f"SCORING_URI__{setting_suffix(m.name)}": m.scoring_url for m in self.models},
            **self.extra_settings,
        }


def _free_port_except(taken: set[int]) -> int:
    while (port := free_port()) in taken:
        pass
    return port


def _port(raw: str, name: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise StackError(f"{name} must be between 1 and 65535, got {port}")
    return port


# ---------------------------------------------------------------------- the services


def _venv_tool(name: str) -> str:
    """Absolute path of a console script of this environment (the pid-file check compares full argv)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _check_tool(path: str) -> None:
    if not Path(path).is_absolute():
        name = Path(path).name
        raise StackError(f"{name} is not installed: run `make setup` (it installs the project and its tools)")


def azurite_bin(repo: Path) -> Path:
    return repo / "node_modules" / ".bin" / "azurite"


def check_node(repo: Path) -> None:
    if shutil.which("node") is None:
        raise StackError(
            "Node.js is not installed (no `node` on PATH): install Node.js 18 or newer, then run `make setup`"
        )
    if not azurite_bin(repo).exists():
        raise StackError(
            "Azurite is not installed (node_modules/.bin/azurite is missing): run `npm ci` or `make setup`"
        )


def create_containers(connection_string: str) -> None:
    from azure.core.exceptions import AzureError, ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    try:
        with BlobServiceClient.from_connection_string(connection_string) as service:
            for name in CONTAINERS:
                with contextlib.suppress(ResourceExistsError):
                    service.create_container(name)
    except AzureError as exc:
        raise StackError(f"azurite is up but creating the containers failed: {exc}") from exc


def ensure_model(settings: StackSettings, report: Callable[[str], None]) -> None:
    if (settings.model_dir / "MLmodel").exists():
        return
    report(f"scoring: no trained model in {settings.model_dir}; training it (python -m scoring.train)")
    run_training(settings, settings.model_dir, "train.log", "the model")


def run_training(settings: StackSettings, out: Path, log_name: str, what: str, *options: str) -> None:
    """``python -m scoring.train [options] --out OUT``, its output appended to ``<log_dir>/<log_name>``.

    Raises StackError naming ``what`` and quoting the log's last lines when training fails.
    """
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log = settings.log_dir / log_name
    with log.open("ab") as stream:
        done = subprocess.run(
            [sys.executable, "-m", "scoring.train", *options, "--out", str(out)],
            cwd=settings.repo,
            stdout=stream,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        lines = "\n".join(f"    {line}" for line in procs.tail(log, 15))
        raise StackError(f"training {what} failed (exit {done.returncode}); last lines of {log}:\n{lines}")


def _require_module(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise StackError(f"{what} ({module}) is not importable: run `make setup` from the repository root")


def build_specs(settings: StackSettings, report: Callable[[str], None]) -> list[ServiceSpec]:
    s = settings
    repo = s.repo
    flag = {name: option for name, (_variable, option) in PORT_SETTINGS.items()}

    azurite_argv = (
        # --disableTelemetry: Azurite otherwise sends usage telemetry (start/stop events, sampled requests) to
        # Microsoft, and where that cannot get out its SIGTERM waited 10 s and more on the uploads before exiting
        # --blobKeepAliveTimeout: Node closes a connection idle for 5 s by default; a client that sends on a pooled
        # connection just as it closes gets a reset, which the storage SDK retries only after its first back-off
        # (15 s): files held 15-17 s in bursts. Ten minutes makes that race rare.
        *azurite_command(), "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--blobKeepAliveTimeout", "600",
        *(() if s.storage_access_log else ("--silent",)),
        "--location", str(s.base_dir / "azurite"),
        "--blobHost", LOOPBACK, "--blobPort", str(s.blob_port),
        "--queueHost", LOOPBACK, "--queuePort", str(s.queue_port),
        "--tableHost", LOOPBACK, "--tablePort", str(s.table_port),
    )  # fmt: skip
    azurite = ServiceSpec(
        name="azurite",
        argv=azurite_argv,
        ports=(s.blob_port, s.queue_port, s.table_port),
        cwd=repo,
        start_timeout=60,
        port_options={
            s.blob_port: flag["blob_port"],
            s.queue_port: flag["queue_port"],
            s.table_port: flag["table_port"],
        },
        before_start=lambda: check_node(repo),
        after_start=lambda: create_containers(s.storage_connection_string),
        listens=f"blob {s.blob_endpoint}  queue :{s.queue_port}  table :{s.table_port}",
    )

    servicebus_argv = (
        sys.executable, "-m", "devstack.servicebus",
        "--config", str(s.servicebus_config),
        "--port", str(s.servicebus_port), "--data", str(s.servicebus_data_dir),
        "--host", LOOPBACK, "--key-name", SB_KEY_NAME, "--key", SB_KEY,
    )  # fmt: skip
    servicebus = ServiceSpec(
        name="servicebus",
        argv=servicebus_argv,
        ports=(s.servicebus_port,),
        cwd=repo,
        ready_line=SERVICEBUS_READY,
        start_timeout=60,
        port_options={s.servicebus_port: flag["servicebus_port"]},
        before_start=lambda: _require_module("devstack.servicebus", "the Service Bus emulator"),
        listens=f"amqp://{LOOPBACK}:{s.servicebus_port}  management https://{LOOPBACK}:{s.servicebus_port}",
    )

    azmlinfsrv = _venv_tool("azmlinfsrv")
    default_port = (s.scoring_port, flag["scoring_port"])
    scoring = [_scoring_spec(s, azmlinfsrv, "scoring", DEFAULT_MODEL, s.model_dir, *default_port, report)]
    scoring += [_scoring_spec(s, azmlinfsrv, m.service, m.name, m.model_dir, m.port, None, report) for m in s.models]

    functions_argv = (
        sys.executable, "-m", "devstack.functions_host", "--script-root", str(repo), "--port", str(s.functions_port),
        "--host", LOOPBACK, "--data-dir", str(s.functions_data_dir),
        # without the access log, a listing on loopback is cheap for a small container: list often
        "--blob-poll-interval", str(BLOB_POLL_SECONDS), "--blob-scan-interval", str(BLOB_SCAN_SECONDS),
        *(("--storage-access-log", f"{s.blob_endpoint}={s.azurite_log}") if s.storage_access_log else ()),
    )  # fmt: skip
    functions = ServiceSpec(
        name="functions",
        argv=functions_argv,
        ports=(s.functions_port,),
        env=s.function_app_settings(),
        cwd=repo,
        ready_line=FUNCTIONS_READY,
        start_timeout=90,
        port_options={s.functions_port: flag["functions_port"]},
        before_start=lambda: _require_module("devstack.functions_host", "the local functions host"),
        listens=s.functions_url,
    )
    return [azurite, servicebus, *scoring, functions]


def _scoring_spec(
    s: StackSettings,
    azmlinfsrv: str,
    name: str,
    route: str,
    model_dir: Path,
    port: int,
    port_option: str | None,
    report: Callable[[str], None],
) -> ServiceSpec:
    """One azmlinfsrv serving ``model_dir`` for ``route`` (it refuses requests for any other route)."""

    def before_scoring() -> None:
        _check_tool(azmlinfsrv)
        if route == DEFAULT_MODEL:
            ensure_model(s, report)
        elif not (model_dir / "MLmodel").is_file():
            raise StackError(f"{name}: {model_dir} holds no MLflow model (no MLmodel file)")

    argv = (
        azmlinfsrv, "--entry_script", str(s.repo / "scoring" / "score.py"),
        "--model_dir", str(model_dir), "--port", str(port),
    )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    return ServiceSpec(
        name=name,
        argv=argv,
        ports=(port,),
        env={
            "RESULT_SERVICEBUS_CONNECTION": s.servicebus_connection_string,
            "RESULTS_STORAGE_CONNECTION": s.storage_connection_string,
            # the scoring service reads input only from this Azurite account
            "INPUT_STORAGE_ACCOUNT_URLS": s.blob_endpoint,
            "RESULTS_CONTAINER": RESULTS_CONTAINER,
            "RESULT_TOPIC": RESULT_TOPIC,
            "SCORING_MODEL_NAME": route,
            "SCORING_WORKERS": "2",  # as scoring/aml/deployment.yml: one job reads its inputs while another scores
            # loopback only, and no shared gunicorn control socket between two servers side by side
            "GUNICORN_CMD_ARGS": gunicorn_loopback.CMD_ARGS,
            **s.telemetry_settings(),
            **s.extra_settings,
        },
        cwd=s.repo,
        http_probe=f"{url}/",
        start_timeout=120,
        port_options={port: port_option} if port_option else {},
        before_start=before_scoring,
        listens=f"{url}/score  route {route}  model {model_dir}",
    )


class LocalStack:
    """The whole local stack under one base directory."""

    def __init__(self, settings: StackSettings, report: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self._report = report or (lambda line: logger.info("%s", line))
        self.runner = Runner(settings.base_dir, build_specs(settings, self._report), self._report)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.runner.specs]

    def up(self, names: Sequence[str] | None = None) -> list[ServiceStatus]:
        """Start all services (or only ``names``, still in dependency order).

        The routes file and the emulator config are written first; routes cannot change under a running
        emulator or functions host (they read them at start), so that is refused with what to do.
        """
        routes = self.settings.routes()
        previous = StackSettings._saved(self.settings.base_dir)
        if previous is not None and previous.models != self.settings.models:
            running = [st.name for st in self.statuses() if st.state == "running"]
            running += [
                st.name
                for st in LocalStack(previous, self._report).statuses()
                if st.state == "running" and st.name not in running
            ]
            if running:
                was = ", ".join(f"{m.name}={m.model_dir}" for m in previous.models) or "none"
                raise StackError(
                    f"the running stack ({', '.join(running)}) has other --model routes ({was}); "
                    "stop it first: python -m devstack down"
                )
        self.settings.save()
        write_stack_files(self.settings.base_dir, routes)
        write_json(self.settings.client_settings_file, {"Values": self.settings.client_settings()})
        return self.runner.up(names)

    def down(self) -> list[str]:
        return self.runner.down()

    def statuses(self) -> list[ServiceStatus]:
        return self.runner.statuses()

    def running(self) -> bool:
        return all(st.state == "running" and st.healthy for st in self.statuses())

    def log_path(self, name: str) -> Path:
        self.runner.spec(name)
        return self.runner.log_path(name)
