"""The local stack's model routes: the declared ones (``models.json``) plus those added with ``--model``.

From one route list this module writes the two files the stack's processes read, as the Bicep derives the
same in Azure: the routes file the functions host imports (``MODEL_ROUTES_FILE``) and the emulator's
``Config.json``, i.e. ``infra/servicebus-entities.json`` plus one subscription per route on the request topic,
with the properties of ``infra/names.json`` (``serviceBus.routeSubscriptionProperties``) and a correlation
rule on the ``model`` application property (``infra/modules/servicebus.bicep`` generates the same).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.routes import Route, route_name_problem, routes_document

INFRA = Path(__file__).resolve().parents[1] / "infra"
ENTITIES_FILE = INFRA / "servicebus-entities.json"
NAMES_FILE = INFRA / "names.json"


class RouteOptionError(ValueError):
    """A ``--model NAME=DIR`` option the stack cannot serve; the message says why."""


@dataclass(frozen=True)
class ModelOption:
    """``--model NAME=DIR``: route NAME served from the MLflow model in DIR."""

    name: str
    model_dir: Path

    @property
    def route(self) -> Route:
        return Route(self.name, f"scoring-{self.name}")


def parse_model_option(text: str) -> ModelOption:
    name, sep, folder = text.partition("=")
    name, folder = name.strip(), folder.strip()
    if not sep or not name or not folder:
        raise RouteOptionError(f"--model {text!r}: expected NAME=MODEL_DIR")
    if problem := route_name_problem(name):
        raise RouteOptionError(f"--model {text!r}: {problem}")
    path = Path(folder).expanduser().resolve()
    if not (path / "MLmodel").is_file():
        raise RouteOptionError(f"--model {text!r}: {path} holds no MLflow model (no MLmodel file)")
    return ModelOption(name, path)


def effective_routes(declared: Sequence[Route], added: Sequence[ModelOption]) -> tuple[Route, ...]:
    routes = list(declared)
    for option in added:
        clash = next((r for r in routes if option.name == r.model or option.route.subscription == r.subscription), None)
        if clash is not None:
            raise RouteOptionError(f"--model {option.name}: route {clash.model!r} is already declared")
        routes.append(option.route)
    return tuple(routes)


def servicebus_config(
    routes: Sequence[Route], entities_file: Path = ENTITIES_FILE, names_file: Path = NAMES_FILE
) -> dict[str, Any]:
    """The emulator's ``Config.json``: the entities file plus one subscription and rule per model route."""
    config: dict[str, Any] = json.loads(entities_file.read_text(encoding="utf-8"))
    service_bus = json.loads(names_file.read_text(encoding="utf-8"))["serviceBus"]
    topics = config["UserConfig"]["Namespaces"][0]["Topics"]
    topic = next(t for t in topics if t["Name"] == service_bus["requestTopic"])
    topic.setdefault("Subscriptions", [])
    for route in routes:
        topic["Subscriptions"].append(
            {
                "Name": route.subscription,
                "Properties": copy.deepcopy(service_bus["routeSubscriptionProperties"]),
                "Rules": [
                    {
                        "Name": f"model-{route.model}",
                        "Properties": {
                            "FilterType": "Correlation",
                            "CorrelationFilter": {"Properties": {"model": route.model}},
                        },
                    }
                ],
            }
        )
    return config


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def write_stack_files(base_dir: Path, routes: Sequence[Route]) -> tuple[Path, Path]:
    """(routes file, emulator config) of a stack, written into its base dir."""
    return (
        write_json(base_dir / "models.json", routes_document(routes)),
        write_json(base_dir / "servicebus-entities.json", servicebus_config(routes)),
    )
