"""Indexing a v2 app with azure.functions' metadata: resolved bindings, annotation checks, clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devstack.functions_host.blob_trigger import compile_path
from devstack.functions_host.indexing import IndexingError, index_app

ENV = {"ServiceBus": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v", "TOPIC": "t1"}


def app_dir(tmp_path: Path, body: str) -> Path:
    header = "import azure.functions as func\n\napp = func.FunctionApp()\n"
    (tmp_path / "function_app.py").write_text(header + textwrap.dedent(body), encoding="utf-8")
    return tmp_path


def test_bindings_are_resolved_and_outputs_collected(tmp_path: Path) -> None:
    root = app_dir(
        tmp_path,
        """
        @app.function_name("renamed")
        @app.service_bus_topic_trigger(arg_name="msg", topic_name="%TOPIC%", subscription_name="s",
                                       connection="ServiceBus", is_sessions_enabled=True)
        @app.service_bus_queue_output(arg_name="out", queue_name="q", connection="ServiceBus")
        def handler(msg: func.ServiceBusMessage, out: func.Out[str]) -> None: ...
        """,
    )
    (spec,) = index_app(root, ENV)
    assert spec.name == "renamed"
    assert spec.trigger["topicName"] == "t1"
    assert spec.trigger["isSessionsEnabled"] is True
    assert [o["name"] for o in spec.outputs] == ["out"]
    assert spec.connection(spec.trigger).connection_string == ENV["ServiceBus"]
    assert not spec.is_async


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            @app.service_bus_queue_trigger(arg_name="msg", queue_name="q", connection="ServiceBus")
            def wrong_type(msg: int) -> None: ...
            """,
            "function 'wrong_type': parameter 'msg' is annotated",
        ),
        (
            """
            @app.service_bus_queue_trigger(arg_name="msgs", queue_name="q", connection="ServiceBus", cardinality="many")
            def builtin_list(msgs: list[func.ServiceBusMessage]) -> None: ...
            """,
            "typing.List[...] here, not list[...]",
        ),
        (
            """
            @app.service_bus_queue_trigger(arg_name="msg", queue_name="q", connection="ServiceBus")
            @app.service_bus_queue_output(arg_name="out", queue_name="q2", connection="ServiceBus")
            def not_out(msg: func.ServiceBusMessage, out: str) -> None: ...
            """,
            "output parameter 'out' must be annotated func.Out",
        ),
        (
            """
            @app.service_bus_queue_trigger(arg_name="msg", queue_name="%NOT_SET%", connection="ServiceBus")
            def unresolved(msg: func.ServiceBusMessage) -> None: ...
            """,
            "'NOT_SET'",
        ),
        (
            """
            @app.blob_input(arg_name="extra", path="c/b", connection="ServiceBus")
            @app.route(route="x")
            def with_input(req: func.HttpRequest, extra: bytes) -> str: ...
            """,
            "binding 'extra' (blob, IN) is not supported",
        ),
    ],
)
def test_rejections_name_the_function(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(IndexingError) as caught:
        index_app(app_dir(tmp_path, body), ENV)
    assert expected in str(caught.value)


def test_blob_trigger_may_ask_for_bytes(tmp_path: Path) -> None:
    root = app_dir(
        tmp_path,
        """
        @app.blob_trigger(arg_name="blob", path="input/{name}", connection="ServiceBus")
        async def whole(blob: bytes) -> None: ...
        """,
    )
    (spec,) = index_app(root, ENV)
    assert spec.trigger_annotation is bytes
    assert spec.is_async


def test_no_app_and_import_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexingError, match=r"no function_app\.py"):
        index_app(tmp_path, ENV)
    (tmp_path / "function_app.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(IndexingError, match="RuntimeError: boom"):
        index_app(tmp_path, ENV)
    (tmp_path / "function_app.py").write_text("x = 1\n")
    with pytest.raises(IndexingError, match="defines no FunctionApp"):
        index_app(tmp_path, ENV)


def test_blob_paths() -> None:
    container, pattern = compile_path("input/{name}")
    assert container == "input"
    assert pattern.fullmatch("a/b/c.csv")
    container, pattern = compile_path("input/{name}.csv")
    assert pattern.fullmatch("x.csv") and not pattern.fullmatch("x.json")
    _, everything = compile_path("input")
    assert everything.fullmatch("any/thing")
    with pytest.raises(ValueError, match="literal container"):
        compile_path("{container}/x")
