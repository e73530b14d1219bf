"""Helpers for the function app's integration tests: hand functions the objects the worker builds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage

from shared.settings import get_endpoint, get_settings
from tests.support.function_app import fresh_function_app


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str | None) -> None:
    """Set (or, with None, remove) settings; the app reads them again on its next invocation."""
    for key, value in values.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    get_endpoint.cache_clear()


def function_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """The fields the worker fills from the trigger metadata, taken from a message received with the SDK."""
    props = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (message.application_properties or {}).items()
    }
    return func.servicebus.ServiceBusMessage(
        body=b"".join(message.body),
        message_id=str(message.message_id),
        session_id=message.session_id,
        content_type=message.content_type,
        delivery_count=message.delivery_count,
        sequence_number=message.sequence_number,
        enqueued_time_utc=message.enqueued_time_utc,
        application_properties=props,
        user_properties=props,
    )


def run_like_host(
    connection: str,
    subscription: str,
    match: Callable[[ServiceBusReceivedMessage], bool],
    function: Callable[[Any], None],
    *,
    timeout: float = 15.0,
    many: bool = True,
) -> tuple[ServiceBusReceivedMessage | None, BaseException | None]:
    """Receives the first matching message on a request-topic subscription and settles it the way the host does
    with autoCompleteMessages: complete when the function returns, abandon when it raises. ``many``: the function
    takes a batch (``cardinality="many"``, as score_request does) and gets a batch of that one message."""
    deadline = time.monotonic() + timeout
    with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_subscription_receiver("inference-requests", subscription) as receiver,
    ):
        while time.monotonic() < deadline:
            for message in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                if not match(message):
                    receiver.complete_message(message)
                    continue
                try:
                    function([function_message(message)] if many else function_message(message))
                except Exception as exc:  # noqa: BLE001 - the host catches whatever a function raises
                    receiver.abandon_message(message)
                    return message, exc
                receiver.complete_message(message)
                return message, None
    return None, None


def indexed_function(name: str) -> Callable[..., Any]:
    """Index the app the way the host does, under the current environment, and return one user function."""
    [function] = [f for f in fresh_function_app().get_functions() if f.get_function_name() == name]
    return function.get_user_function()
