"""Message bus adapter (:class:`shared.ports.MessageBus`) over ``azure-servicebus``.

Why the SDK and not the Functions Service Bus output binding: the Python output binding takes only the
body (a ``str``), so it cannot set ``message_id`` (which the topic's duplicate detection keys on),
``session_id`` (the reply session results travel on) or the application properties the subscription
rules filter on (``model``), and it cannot schedule a message for later (our throttling back-off).

Service Bus clients are not thread-safe, so each call opens its own client and sender in ``with`` blocks;
nothing is shared between the worker's threads.
"""

from __future__ import annotations

import logging
from datetime import datetime

from azure.servicebus import ServiceBusClient, ServiceBusMessage

from shared.ports import OutgoingMessage
from shared.settings import Connection

logger = logging.getLogger(__name__)


def _to_sdk(message: OutgoingMessage) -> ServiceBusMessage:
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        session_id=message.session_id,
        application_properties=dict(message.application_properties),  # type: ignore[arg-type]
        content_type=message.content_type,
        subject=message.subject,
    )


class ServiceBusPublisher:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def _client(self) -> ServiceBusClient:
        if self._connection.connection_string is not None:
            return ServiceBusClient.from_connection_string(self._connection.connection_string)
        from shared.storage import credential_for

        return ServiceBusClient(str(self._connection.endpoint), credential_for(self._connection))

    def publish(self, topic: str, message: OutgoingMessage) -> None:
        with self._client() as client, client.get_topic_sender(topic) as sender:
            sender.send_messages(_to_sdk(message))
        logger.info("published message %s to %s", message.message_id, topic)

    def schedule(self, topic: str, message: OutgoingMessage, at: datetime) -> None:
        with self._client() as client, client.get_topic_sender(topic) as sender:
            sender.schedule_messages(_to_sdk(message), at)
        logger.info("scheduled message %s on %s for %s", message.message_id, topic, at.isoformat())
