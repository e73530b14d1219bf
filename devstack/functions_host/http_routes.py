"""HTTP trigger routes and keys: route templates (``items/{id}``, ``{id:int}``, ``{id?}``, ``{*path}``) under the
``routePrefix``, method filters and the auth levels ``anonymous``, ``function`` and ``admin``."""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from .indexing import FunctionSpec

logger = logging.getLogger(__name__)

KEY_ENV = "FUNCTIONS_HOST_KEY"
KEY_FILE = "host.key"
_CONSTRAINTS = {"int": r"-?\d+", "long": r"-?\d+", "alpha": r"[A-Za-z]+", "bool": r"(?i:true|false)"}
_PARAM = re.compile(r"\{([^{}]+)\}")


def _param_pattern(spec: str) -> tuple[str, str, bool, bool]:
    """(name, regex, optional, catch_all) for the inside of ``{...}``."""
    catch_all = spec.startswith("*")
    spec = spec.lstrip("*")
    name, _, constraint = spec.partition(":")
    optional = name.endswith("?") or constraint.endswith("?")
    name = name.rstrip("?")
    constraint = constraint.rstrip("?").split("(")[0]
    if not name.isidentifier():
        raise ValueError(f"route parameter '{name}' is not a valid name")
    regex = ".*" if catch_all else _CONSTRAINTS.get(constraint, "[^/]+")
    return name, regex, optional, catch_all


def compile_route(template: str) -> re.Pattern[str]:
    pattern = ""
    for index, segment in enumerate(s for s in template.strip("/").split("/") if s):
        slash = "/" if index else ""
        whole = _PARAM.fullmatch(segment)
        if whole:
            name, regex, optional, catch_all = _param_pattern(whole.group(1))
            if optional or catch_all:
                pattern += f"(?:{slash}(?P<{name}>{regex}))?"
            else:
                pattern += f"{slash}(?P<{name}>{regex})"
            continue
        piece, position = "", 0
        for match in _PARAM.finditer(segment):
            piece += re.escape(segment[position : match.start()])
            name, regex, _, _ = _param_pattern(match.group(1))
            # Greedy from the left = ASP.NET's right-to-left matching of complex segments.
            piece += f"(?P<{name}>{regex})"
            position = match.end()
        piece += re.escape(segment[position:])
        pattern += slash + piece
    return re.compile(pattern, re.IGNORECASE)


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    auth_level: str
    literal_segments: int


def build_routes(specs: Iterable[FunctionSpec]) -> list[HttpRoute]:
    routes = []
    for spec in specs:
        if spec.trigger_type != "httpTrigger":
            continue
        template = str(spec.trigger.get("route") or spec.name)
        try:
            pattern = compile_route(template)
        except (ValueError, re.error) as exc:
            raise ValueError(f"function '{spec.name}': route '{template}' is invalid: {exc}") from exc
        methods = spec.trigger.get("methods")
        routes.append(
            HttpRoute(
                spec=spec,
                template=template,
                pattern=pattern,
                methods=frozenset(str(m).upper() for m in methods) if methods else None,
                auth_level=str(spec.trigger.get("authLevel") or "FUNCTION").lower(),
                literal_segments=sum(1 for s in template.split("/") if s and "{" not in s),
            )
        )
    # Most specific first, as ASP.NET routing prefers literal segments over parameters.
    return sorted(routes, key=lambda r: -r.literal_segments)


def match_route(routes: Iterable[HttpRoute], path: str) -> list[tuple[HttpRoute, dict[str, str]]]:
    """Every route whose template matches ``path`` (relative to the prefix), with its route parameters."""
    found = []
    for route in routes:
        match = route.pattern.fullmatch(path.strip("/"))
        if match:
            params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            found.append((route, params))
    return found


def load_host_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(key, where it came from): ``FUNCTIONS_HOST_KEY``, else ``<data dir>/host.key`` (generated once, 0600)."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return env[KEY_ENV], KEY_ENV
    path = data_dir / KEY_FILE
    if path.is_file():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key, str(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    logger.info("generated a host key in %s", path)
    return key, str(path)


def authorized(auth_level: str, presented: str | None, host_key: str) -> bool:
    if auth_level == "anonymous":
        return True
    return presented is not None and hmac.compare_digest(presented.encode(), host_key.encode())
