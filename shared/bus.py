"""Message bus adapter (:class:`shared.ports.MessageBus`) over ``azure-servicebus``.

Why the SDK and not the Functions Service Bus output binding: the Python output binding takes only the
body (a ``str``), so it cannot set ``message_id`` (which the topic's duplicate detection keys on),
``session_id`` (the reply session results travel on) or the application properties the subscription
rules filter on (``model``), and it cannot schedule a message for later (our throttling back-off).

Service Bus clients are not thread-safe, so nothing is shared between the worker's threads: each thread
keeps its own client and one sender per topic and reuses them across invocations, as the SDK's guidance
asks (a fresh client costs about a second in handshakes and shutdown, more than everything else a
trigger does). A client that fails is closed and dropped, so the next call on that thread starts afresh.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import datetime

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSender
from azure.servicebus.exceptions import ServiceBusError

from shared.config import Connection
from shared.ports import OutgoingMessage
from shared.telemetry.propagation import message_properties

logger = logging.getLogger(__name__)


def _to_sdk(message: OutgoingMessage) -> ServiceBusMessage:
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        session_id=message.session_id,
        # The current span travels with the message (traceparent / Diagnostic-Id) to its readers.
        application_properties={**message.application_properties, **message_properties()},  # type: ignore[dict-item]
        content_type=message.content_type,
        subject=message.subject,
    )


def new_client(connection: Connection) -> ServiceBusClient:
    if connection.connection_string is not None:
        return ServiceBusClient.from_connection_string(connection.connection_string)
    from shared.storage import credential_for

    return ServiceBusClient(str(connection.fully_qualified_namespace), credential_for(connection))


class _ThreadClients(threading.local):
    """This thread's clients, one per connection, each with its senders by topic."""

    def __init__(self) -> None:
        self.clients: dict[Connection, tuple[ServiceBusClient, dict[str, ServiceBusSender]]] = {}


_THREAD = _ThreadClients()


@contextlib.contextmanager
def _sender(connection: Connection, topic: str) -> Iterator[ServiceBusSender]:
    if connection not in _THREAD.clients:
        _THREAD.clients[connection] = (new_client(connection), {})
    client, senders = _THREAD.clients[connection]
    if topic not in senders:
        senders[topic] = client.get_topic_sender(topic)
    try:
        yield senders[topic]
    except ServiceBusError:
        del _THREAD.clients[connection]
        with contextlib.suppress(ServiceBusError, OSError):
            client.close()
        raise


class AzureMessageBus:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def publish(self, topic: str, message: OutgoingMessage) -> None:
        with _sender(self._connection, topic) as sender:
            sender.send_messages(_to_sdk(message))
        logger.info("published message %s to %s", message.message_id, topic)

    def schedule(self, topic: str, message: OutgoingMessage, at: datetime) -> None:
        with _sender(self._connection, topic) as sender:
            sender.schedule_messages(_to_sdk(message), at)
        logger.info("scheduled message %s on %s for %s", message.message_id, topic, at.isoformat())
