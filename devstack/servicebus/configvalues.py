"""Validation helpers for the JSON values of the Service Bus emulator's entity configuration.

Each helper takes the value and the path of its field, and raises ConfigError naming that path.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any, Final


class ConfigError(ValueError):
    """An invalid configuration; ``field`` is the path of the offending field, e.g. ``UserConfig.Namespaces[0]``."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return json.dumps(value)


def as_object(value: Any, path: str, known: Collection[str] | None) -> dict[str, Any]:
    """``value`` as an object whose keys are all ``known`` (None: any key)."""
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected an object, got {show(value)}")
    if known is not None:
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
                if not close:
                    close = [k for k in known if k.lower() == key.lower()]
                hint = f"did you mean {close[0]!r}?" if close else f"known keys are {', '.join(sorted(known))}"
                raise ConfigError(join_path(path, key), f"unknown key; {hint}")
    return value


def join_path(path: str, key: str) -> str:
    return key if path in ("", "(root)") else f"{path}.{key}"


def required(data: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in data:
        raise ConfigError(join_path(path, key), "is required")
    return data[key]


def as_array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(path, f"expected an array, got {show(value)}")
    return value


def item_objects(
    data: Mapping[str, Any], key: str, path: str, known: Collection[str]
) -> list[tuple[str, dict[str, Any]]]:
    """(path, object) for each element of the optional array ``data[key]``."""
    array_path = f"{path}.{key}"
    items = as_array(data.get(key, []), array_path)
    return [(f"{array_path}[{i}]", as_object(item, f"{array_path}[{i}]", known)) for i, item in enumerate(items)]


def as_string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a string, got {show(value)}")
    return value


def as_boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {show(value)}")
    return value


def as_integer(value: Any, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer, got {show(value)}")
    if not minimum <= value <= 2**31 - 1:
        raise ConfigError(path, f"{value} is out of range; it must be at least {minimum}")
    return value


_NAME_RE: Final = re.compile(r"[A-Za-z0-9]|[A-Za-z0-9][\w\-./]*[A-Za-z0-9]", re.ASCII)


def as_name(value: Any, path: str, allow_slash: bool = True) -> str:
    name = as_string(value, path)
    if not _NAME_RE.fullmatch(name) or (not allow_slash and "/" in name):
        allowed = "letters, digits, '_', '-', '.'" + (" and '/'" if allow_slash else "")
        raise ConfigError(
            path, f"{name!r} is not a valid name: use {allowed}, starting and ending with a letter or digit"
        )
    return name


def check_unique(names: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for name, path in names:
        first = seen.setdefault(name.lower(), path)
        if first != path:
            raise ConfigError(path, f"{name!r} is already used by {first.removesuffix('.Name')}")


_DURATION_RE: Final = re.compile(
    r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", re.ASCII
)


def as_duration(value: Any, path: str) -> timedelta:
    text = as_string(value, path)
    match = _DURATION_RE.fullmatch(text)
    if match is None or not any(match.groups()) or text.endswith("T"):
        raise ConfigError(path, f"{text!r} is not an ISO-8601 duration (like PT30S, PT1M, PT1H or P1D)")
    years, months, weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=years * 365 + months * 30 + weeks * 7 + days, hours=hours, minutes=minutes, seconds=seconds)


def iso_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
