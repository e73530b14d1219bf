"""Sends the values of Service Bus output bindings after a function returns (the host's job, not the worker's).

One ``ServiceBusOutputs`` belongs to one thread: it caches a client per connection and a sender per entity and
closes them all on ``close()``. ``str`` values go out as UTF-8 bodies with content type ``text/plain`` and
``bytes`` as ``application/octet-stream``, like the Service Bus extension's converters.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

from azure.functions import meta
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSender

from . import clients

if TYPE_CHECKING:
    from .indexing import FunctionSpec

logger = logging.getLogger(__name__)


def entity_of(binding: dict[str, Any]) -> str:
    entity = binding.get("queueName") or binding.get("topicName")
    if not entity:
        raise ValueError(f"Service Bus binding '{binding.get('name')}' names no queueName or topicName")
    return str(entity)


def message_from(datum: meta.Datum) -> ServiceBusMessage:
    if datum.type in ("string", "json"):
        return ServiceBusMessage(str(datum.value).encode("utf-8"), content_type="text/plain")
    if datum.type == "bytes":
        return ServiceBusMessage(bytes(datum.value), content_type="application/octet-stream")
    raise TypeError(f"cannot send a Service Bus output of type {datum.type}")


class ServiceBusOutputs:
    def __init__(self) -> None:
        self._stack = ExitStack()  # every client and sender is entered as a context manager and exited on close()
        self._clients: dict[str, ServiceBusClient] = {}
        self._senders: dict[tuple[str, str], ServiceBusSender] = {}

    def __enter__(self) -> ServiceBusOutputs:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def send(self, spec: FunctionSpec, binding: dict[str, Any], datum: meta.Datum) -> None:
        connection = spec.connection(binding)
        entity = entity_of(binding)
        key = (connection.name, entity)
        sender = self._senders.get(key)
        if sender is None:
            client = self._clients.get(connection.name)
            if client is None:
                client = self._clients[connection.name] = self._stack.enter_context(clients.servicebus(connection))
            opened = client.get_queue_sender(entity) if binding.get("queueName") else client.get_topic_sender(entity)
            sender = self._senders[key] = self._stack.enter_context(opened)
        try:
            sender.send_messages(message_from(datum))
        except Exception:
            # A broken link is not reused: the next send opens a fresh one.
            self._senders.pop(key, None)
            _close_quietly(sender)
            raise
        logger.debug("function '%s' sent its '%s' output to %s", spec.name, binding["name"], entity)

    def close(self) -> None:
        try:
            self._stack.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            logger.debug("closing Service Bus outputs failed: %s", exc)
        self._senders.clear()
        self._clients.clear()
        self._stack = ExitStack()


def _close_quietly(closable: Any) -> None:
    try:
        closable.close()
    except Exception as exc:  # noqa: BLE001 - closing is best effort
        logger.debug("closing %s failed: %s", type(closable).__name__, exc)
