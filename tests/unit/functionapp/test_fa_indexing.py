"""Indexing: the app exposes exactly the expected functions and bindings (what the host reads)."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessageInConverter

from tests.support.function_app import fresh_function_app

from .fakes import TWO_ROUTES


def load_app(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for key in ("MODEL_ROUTES_FILE", "BLOB_TRIGGER_SOURCE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fresh_function_app()
    import function_app

    return function_app


@pytest.fixture
def restore_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    load_app(monkeypatch)


def bindings(app_module: ModuleType) -> dict[str, list[dict[str, Any]]]:
    functions = app_module.app.get_functions()
    return {f.get_function_name(): json.loads(f.get_function_json())["bindings"] for f in functions}


def test_functions_and_bindings_with_two_model_routes(restore_modules: pytest.MonkeyPatch) -> None:
    found = bindings(load_app(restore_modules, MODEL_ROUTES_FILE=str(TWO_ROUTES)))
    assert sorted(found) == ["reconcile", "request_status", "score_request", "score_request_churn_v2", "status",
                             "status_error_record", "submit_blob", "write_result"]  # fmt: skip
    assert found["submit_blob"] == [{"direction": "IN", "type": "blobTrigger", "name": "client",
                                     "path": "%INPUT_CONTAINER%/{name}", "connection": "DataStorage",
                                     "source": "LogsAndContainerScan"}]  # fmt: skip
    for name, subscription in (
        ("score_request", "scoring"),
        ("score_request_churn_v2", "scoring-churn-v2"),
    ):
        [trigger] = found[name]
        assert trigger == {
            "direction": "IN",
            "type": "serviceBusTrigger",
            "name": "msgs",
            "connection": "ServiceBus",
            "topicName": "%REQUEST_TOPIC%",
            "subscriptionName": subscription,
            "cardinality": "MANY",
        }  # azure.functions writes the enum name of the cardinality
    [writer] = found["write_result"]
    assert writer["type"] == "serviceBusTrigger" and writer["isSessionsEnabled"] is True
    assert (writer["name"], writer["cardinality"]) == ("msgs", "MANY")
    assert (writer["topicName"], writer["subscriptionName"], writer["connection"]) == (
        "%RESULT_TOPIC%", "%WRITER_SUBSCRIPTION%", "ServiceBus")  # fmt: skip
    [timer] = found["reconcile"]
    assert (timer["type"], timer["schedule"]) == ("timerTrigger", "%RECONCILE_SCHEDULE%")
    http_in, http_out = found["request_status"]
    assert (http_in["type"], http_in["authLevel"], http_in["route"], http_in["methods"]) == (
        "httpTrigger", "FUNCTION", "requests/{request_id}", ["GET"])  # fmt: skip
    assert (http_out["type"], http_out["name"]) == ("http", "$return")
    for name, route in (("status", "status"), ("status_error_record", "status/errors/{request_id}")):
        page_in, _page_out = found[name]
        assert (page_in["authLevel"], page_in["route"], page_in["methods"]) == ("FUNCTION", route, ["GET"])


def test_single_route_and_event_grid_source(restore_modules: pytest.MonkeyPatch) -> None:
    found = bindings(load_app(restore_modules, BLOB_TRIGGER_SOURCE="EventGrid"))
    assert "score_request_churn_v2" not in found and "score_request" in found
    assert found["submit_blob"][0]["source"] == "EventGrid"


def test_user_functions_are_the_trigger_modules(restore_modules: pytest.MonkeyPatch) -> None:
    app_module = load_app(restore_modules, MODEL_ROUTES_FILE=str(TWO_ROUTES))
    users = {f.get_function_name(): f.get_user_function() for f in app_module.app.get_functions()}
    assert users["score_request_churn_v2"].__module__ == "shared.triggers.score_request"
    assert users["request_status"].__module__ == "shared.triggers.request_status"


def test_score_request_takes_a_batch_the_way_the_worker_accepts_it(restore_modules: pytest.MonkeyPatch) -> None:
    """The worker loads a function only when azure.functions' converter accepts its trigger annotation; for a
    batch that is a typing generic (``typing.List[func.ServiceBusMessage]``), not ``list[...]``."""
    app_module = load_app(restore_modules, MODEL_ROUTES_FILE=str(TWO_ROUTES))
    users = {f.get_function_name(): f.get_user_function() for f in app_module.app.get_functions()}
    for name in ("score_request", "score_request_churn_v2"):
        annotation = typing.get_type_hints(users[name])["msgs"]
        assert ServiceBusMessageInConverter.check_input_type_annotation(annotation), annotation
    assert not ServiceBusMessageInConverter.check_input_type_annotation(list[func.ServiceBusMessage])
