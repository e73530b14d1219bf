"""The local stack's model routes: --model options, the files written from them, one scoring server per route."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.routes import RouteOptionError, effective_routes, parse_model_option, write_stack_files
from devstack.servicebus.config import load_config
from devstack.stack import REPO, StackSettings, build_specs
from shared.routes import Route, load_routes


def test_model_options_are_checked(model_dir: Path) -> None:
    option = parse_model_option(f"mine={model_dir}")
    assert (option.name, option.model_dir, option.route) == ("mine", model_dir, Route("mine", "scoring-mine"))
    for bad, message in [("mine", "NAME=MODEL_DIR"), (f"Mine={model_dir}", "route name"),
                         (f"mine={model_dir.parent}", "no MLflow model")]:  # fmt: skip
        with pytest.raises(RouteOptionError, match=message):
            parse_model_option(bad)
    with pytest.raises(RouteOptionError, match="already declared"):
        effective_routes(load_routes(), [parse_model_option(f"default={model_dir}")])


def test_stack_files_follow_the_routes(tmp_path: Path, model_dir: Path) -> None:
    routes = effective_routes(load_routes(), [parse_model_option(f"mine={model_dir}")])
    routes_file, entities = write_stack_files(tmp_path, routes)
    assert load_routes(routes_file) == routes
    topic = load_config(entities).topic("inference-requests")
    assert topic is not None
    subscriptions = {s.name: s for s in topic.subscriptions}
    assert set(subscriptions) == {"scoring", "scoring-mine"}
    system = {"MessageId": "m"}
    assert subscriptions["scoring-mine"].rules[0].filter.matches(system, {"model": "mine"})
    assert not subscriptions["scoring-mine"].rules[0].filter.matches(system, {"model": "default"})
    assert subscriptions["scoring"].rules[0].filter.matches(system, {"model": "default"})


def test_each_model_gets_its_own_scoring_server_and_settings(tmp_path: Path, model_dir: Path) -> None:
    settings = StackSettings.load(tmp_path, {}, [parse_model_option(f"mine={model_dir}")])
    [extra] = settings.models
    assert extra.port not in (settings.scoring_port, settings.functions_port)
    settings.save()
    again = StackSettings.load(tmp_path)
    assert again.models == settings.models, "status/down/demo find the --model routes of the last up"
    assert StackSettings.load(tmp_path, {}, []).models == ()
    specs = {spec.name: spec for spec in build_specs(settings, lambda line: None)}
    assert [n for n in specs if n.startswith("scoring")] == ["scoring", "scoring-mine"]
    assert specs["scoring-mine"].env["SCORING_MODEL_NAME"] == "mine"
    assert specs["scoring"].env["SCORING_MODEL_NAME"] == "default"
    assert str(model_dir) in specs["scoring-mine"].argv and str(extra.port) in specs["scoring-mine"].argv
    app = settings.function_app_settings()
    assert app["SCORING_URI__MINE"] == extra.scoring_url
    assert app["MODEL_ROUTES_FILE"] == str(tmp_path / "models.json")
    assert settings.client_settings()["SCORING_URI__MINE"] == extra.scoring_url
    assert json.loads((REPO / "models.json").read_text())["routes"][0]["model"] == "default"
