"""HTTP route templates, matching and key checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devstack.functions_host.http_routes import authorized, build_routes, compile_route, load_host_key, match_route
from devstack.functions_host.indexing import FunctionSpec


def spec(name: str, route: str, methods: list[str] | None = None, auth: str = "FUNCTION") -> FunctionSpec:
    trigger: dict[str, Any] = {"type": "httpTrigger", "name": "req", "route": route, "authLevel": auth}
    if methods:
        trigger["methods"] = methods
    return FunctionSpec(name, trigger, (), lambda req: None, ("req",), False)


def test_templates() -> None:
    assert compile_route("requests/{request_id}").fullmatch("requests/abc-1")
    assert not compile_route("requests/{request_id}").fullmatch("requests/a/b")
    assert compile_route("items/{id:int}").fullmatch("items/42")
    assert not compile_route("items/{id:int}").fullmatch("items/x")
    optional = compile_route("files/{name?}")
    assert optional.fullmatch("files") and optional.fullmatch("files/a.csv")
    catch_all = compile_route("blobs/{*path}")
    match = catch_all.fullmatch("blobs/a/b/c.csv")
    assert match and match.group("path") == "a/b/c.csv"
    mixed = compile_route("files/{stem}.{ext}").fullmatch("files/report.v2.csv")
    assert mixed and (mixed.group("stem"), mixed.group("ext")) == ("report.v2", "csv")
    assert compile_route("Status").fullmatch("status")


def test_literal_routes_win_and_params_are_unquoted() -> None:
    routes = build_routes([spec("by_id", "requests/{request_id}"), spec("latest", "requests/latest")])
    assert match_route(routes, "requests/latest")[0][0].spec.name == "latest"
    route, params = match_route(routes, "requests/a%20b")[0]
    assert route.spec.name == "by_id" and params == {"request_id": "a b"}


def test_methods_and_auth_levels() -> None:
    (route,) = build_routes([spec("f", "x", ["get", "Post"], "ANONYMOUS")])
    assert route.methods == frozenset({"GET", "POST"})
    assert route.auth_level == "anonymous"
    assert authorized("anonymous", None, "k")
    assert authorized("function", "k", "k")
    assert not authorized("function", None, "k")
    assert not authorized("admin", "other", "k")


def test_host_key_from_env_or_generated_once(tmp_path: Path) -> None:
    assert load_host_key(tmp_path, {"FUNCTIONS_HOST_KEY": "abc"}) == ("abc", "FUNCTIONS_HOST_KEY")
    key, source = load_host_key(tmp_path / "d", {})
    assert source.endswith("host.key") and len(key) >= 32
    assert load_host_key(tmp_path / "d", {})[0] == key
