"""Model routes: the one declaration (``models.json`` at the repository root) every component derives from.

A route is a model name (the ``model`` application property and blob metadata) and the subscription of the
request topic that receives its requests. From this list follow: one ``score_request`` function per route
(registered when ``function_app.py`` is imported, so the file ships with the app), the subscriptions and their
``model`` rules (``infra/modules/servicebus.bicep``; the local stack writes the same into the emulator's
config), the Azure ML deployment each route is pinned to (``SCORING_DEPLOYMENT__<SUFFIX>``, set by the Bicep)
and the local stack's scoring servers. The route named :data:`shared.contracts.DEFAULT_MODEL` is required: it
serves files uploaded without ``model`` metadata.

A route name is also its Azure ML deployment's name, so it follows that rule: 3-32 characters, lower-case
letters, digits and ``-``, starting with a letter. ``MODEL_ROUTES_FILE`` points at another file (the local
stack uses it for routes added with ``--model``). Standard library only: the function app, the client and the
local stack import it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.contracts import DEFAULT_MODEL

ROUTES_FILE_SETTING = "MODEL_ROUTES_FILE"
ROUTES_FILE = Path(__file__).resolve().parents[1] / "models.json"
ROUTE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
_SUBSCRIPTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")


class RoutesError(ValueError):
    """The route declaration is missing or invalid; the message names the file and the entry."""


@dataclass(frozen=True)
class Route:
    model: str
    subscription: str

    @property
    def setting_suffix(self) -> str:
        return setting_suffix(self.model)


def setting_suffix(model: str) -> str:
    """``fraud-v2`` -> ``FRAUD_V2``: the suffix of the route's ``SCORING_URI__`` / ``_KEY__`` / ``_DEPLOYMENT__``."""
    return re.sub(r"[^A-Za-z0-9]", "_", model).upper()


def route_name_problem(model: str) -> str | None:
    if ROUTE_NAME.match(model):
        return None
    return f"route name {model!r}: use 3-32 lower-case letters, digits or '-', starting with a letter"


def parse_routes(document: Any, where: str) -> tuple[Route, ...]:
    """The routes of a ``models.json`` document, the default route first; raises RoutesError."""
    entries = document.get("routes") if isinstance(document, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise RoutesError(f"{where}: expected an object with a non-empty list 'routes'")
    routes: list[Route] = []
    for i, entry in enumerate(entries):
        at = f"{where}: routes[{i}]"
        if not isinstance(entry, Mapping) or set(entry) != {"model", "subscription"}:
            raise RoutesError(f"{at}: expected {{'model': NAME, 'subscription': NAME}}, got {entry!r}")
        model, subscription = entry["model"], entry["subscription"]
        if not isinstance(model, str) or (problem := route_name_problem(model)):
            raise RoutesError(f"{at}: {problem if isinstance(model, str) else 'model must be a string'}")
        if not isinstance(subscription, str) or not _SUBSCRIPTION_NAME.match(subscription):
            raise RoutesError(f"{at}: subscription {subscription!r} is not a Service Bus subscription name")
        for other in routes:
            if other.model == model or other.subscription.lower() == subscription.lower():
                raise RoutesError(f"{at}: model {model!r} or subscription {subscription!r} is declared twice")
        routes.append(Route(model, subscription))
    default = [r for r in routes if r.model == DEFAULT_MODEL]
    if not default:
        raise RoutesError(f"{where}: the route {DEFAULT_MODEL!r} is required (files without model metadata use it)")
    return (default[0], *(r for r in routes if r.model != DEFAULT_MODEL))


def load_routes(path: Path = ROUTES_FILE) -> tuple[Route, ...]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RoutesError(f"{path}: the model route declaration is missing") from exc
    except (OSError, ValueError) as exc:
        raise RoutesError(f"{path}: not readable JSON ({exc})") from exc
    return parse_routes(document, str(path))


def routes_file(env: Mapping[str, str]) -> Path:
    raw = env.get(ROUTES_FILE_SETTING, "").strip()
    return Path(raw) if raw else ROUTES_FILE


def routes_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The ``models.json`` form of ``routes`` (the local stack writes its effective routes with it)."""
    return {"routes": [{"model": r.model, "subscription": r.subscription} for r in routes]}
