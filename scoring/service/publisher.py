"""Publishing InferenceResult messages to the reply topic on the client's session.

``ResultPublisher`` is the port the dispatcher uses; ``ServiceBusPublisher`` implements it with the
azure-servicebus SDK. One publisher (client + topic sender) belongs to one worker thread for that
thread's whole life: SDK clients are not thread-safe, and reconnecting per result would cost a CBS
handshake each time. The result goes out as a one-message batch so an over-size message is caught by
``add_message`` (ValueError) instead of failing at the broker.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Protocol

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSender

from scoring.service.settings import ScoringSettings
from shared.contracts import InferenceResult
from shared.telemetry import pipeline
from shared.telemetry.propagation import message_properties

logger = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The result could not be published."""


class ResultPublisher(Protocol):
    def publish(self, result: InferenceResult, session_id: str) -> None: ...

    def __enter__(self) -> ResultPublisher: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def result_message(result: InferenceResult, session_id: str) -> ServiceBusMessage:
    return ServiceBusMessage(
        result.to_json(),
        session_id=session_id,
        message_id=result.message_id,
        # The current span (the job's publish stage) travels with the result to the writer.
        application_properties={**result.application_properties(), **message_properties()},  # type: ignore[dict-item]
        content_type="application/json",
    )


class ServiceBusPublisher:
    def __init__(self, settings: ScoringSettings) -> None:
        if settings.servicebus_connection:
            self._client = ServiceBusClient.from_connection_string(settings.servicebus_connection)
        elif settings.servicebus_namespace:
            from azure.identity import DefaultAzureCredential

            self._client = ServiceBusClient(settings.servicebus_namespace, DefaultAzureCredential())
        else:
            raise PublishError("RESULT_SERVICEBUS_CONNECTION or RESULT_SERVICEBUS_NAMESPACE is required to publish")
        self._topic = settings.result_topic
        self._sender: ServiceBusSender | None = None

    def __enter__(self) -> ServiceBusPublisher:
        self._client.__enter__()
        self._sender = self._client.get_topic_sender(self._topic)
        self._sender.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._sender is not None:
                self._sender.__exit__(exc_type, exc, tb)
        finally:
            self._client.__exit__(exc_type, exc, tb)

    def publish(self, result: InferenceResult, session_id: str) -> None:
        if self._sender is None:
            raise PublishError("the publisher is not open (use it in a with block)")
        with pipeline.stage("publish", **{pipeline.OUTCOME: result.status.value}):
            batch = self._sender.create_message_batch()
            try:
                batch.add_message(result_message(result, session_id))
            except ValueError as exc:
                raise PublishError(f"the result message for {result.request_id} does not fit in one message") from exc
            self._sender.send_messages(batch)
        logger.info("published %s result for %s to %s", result.status, result.request_id, self._topic)
