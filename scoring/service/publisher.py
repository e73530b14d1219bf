"""Publishing InferenceResult messages to the reply topic, each on its client's session.

``ResultPublisher`` is the port the dispatcher uses; ``ServiceBusPublisher`` implements it with the
azure-servicebus SDK. One publisher (client + topic sender) belongs to one worker thread for that
thread's whole life: SDK clients are not thread-safe, and reconnecting per result would cost a CBS
handshake each time.

The results of one job (the small files of a batch) go out together: one ``create_message_batch()`` per
reply session, started again when the next message does not fit (``add_message`` raises ValueError), so a
burst of small files on one session costs a send per batch instead of a send per file. The result topic must
not be partitioned: on a partitioned entity with duplicate detection Service Bus refuses a batch whose messages
have different message ids, and every result has its own. ``infra/modules/servicebus.bicep`` creates it
unpartitioned on a Standard namespace (a Premium namespace with partitions would partition it). A batch
holds one session, so a reply session's results keep their order. A send is all or nothing; ``sent`` is
told of each batch the broker took, so a retry sends only what is left.
Message ids are fixed per result and the topic de-duplicates them, so a batch sent again after a send
that reached the broker but failed on the way back is dropped, not delivered twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusMessageBatch, ServiceBusSender
from opentelemetry import trace
from opentelemetry.context import Context

from scoring.service.settings import ScoringSettings
from shared.contracts import InferenceResult
from shared.telemetry import pipeline
from shared.telemetry.propagation import message_properties

logger = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The result could not be published."""


@dataclass(frozen=True)
class Outgoing:
    """One file's result, the session it goes to and the trace context of its job (its publish span's parent)."""

    result: InferenceResult
    session_id: str
    context: Context | None = None


Sent = Callable[[Sequence[Outgoing]], None]


class ResultPublisher(Protocol):
    def publish(self, results: Sequence[Outgoing], sent: Sent) -> None:
        """Sends every result; calls ``sent`` with the results of each send the broker took, in order."""
        ...

    def __enter__(self) -> ResultPublisher: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def result_message(result: InferenceResult, session_id: str, context: Context | None = None) -> ServiceBusMessage:
    return ServiceBusMessage(
        result.to_json(),
        session_id=session_id,
        message_id=result.message_id,
        # The span in ``context`` (the file's publish stage) travels with the result to the writer.
        application_properties={**result.application_properties(), **message_properties(context)},  # type: ignore[dict-item]
        content_type="application/json",
    )


def by_session(results: Sequence[Outgoing]) -> list[list[Outgoing]]:
    """The results grouped per session, sessions in the order of their first result, results in order."""
    groups: dict[str, list[Outgoing]] = {}
    for item in results:
        groups.setdefault(item.session_id, []).append(item)
    return list(groups.values())


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

    def publish(self, results: Sequence[Outgoing], sent: Sent) -> None:
        if self._sender is None:
            raise PublishError("the publisher is not open (use it in a with block)")
        for session in by_session(results):
            self._publish_session(self._sender, session, sent)

    def _publish_session(self, sender: ServiceBusSender, results: list[Outgoing], sent: Sent) -> None:
        batch = sender.create_message_batch()
        held: list[tuple[Outgoing, trace.Span]] = []  # the results in ``batch`` and their publish spans
        try:
            for item in results:
                # Each file's publish stage is a span of its own job, open until its batch is sent.
                span = pipeline.TRACER.start_span(
                    "publish", context=item.context, attributes={pipeline.OUTCOME: item.result.status.value}
                )
                try:
                    message = result_message(item.result, item.session_id, trace.set_span_in_context(span))
                    if not _added(batch, message):
                        if held:  # the batch is full: send it and start the next one with this message
                            self._send(sender, batch, held, sent)
                            held = []
                            batch = sender.create_message_batch()
                        if not _added(batch, message):
                            raise PublishError(
                                f"the result message for {item.result.request_id} does not fit in one message"
                            )
                except BaseException:
                    span.end()
                    raise
                held.append((item, span))
            if held:
                self._send(sender, batch, held, sent)
                held = []
        finally:
            for _, span in held:  # not sent: the spans end with the failure
                span.end()

    def _send(
        self,
        sender: ServiceBusSender,
        batch: ServiceBusMessageBatch,
        held: list[tuple[Outgoing, trace.Span]],
        sent: Sent,
    ) -> None:
        sender.send_messages(batch)
        items = [item for item, _ in held]
        for _, span in held:
            span.end()
        sent(items)
        logger.info(
            "published %d result(s) to %s on session %s: %s",
            len(items),
            self._topic,
            items[0].session_id,
            ", ".join(f"{item.result.request_id} {item.result.status}" for item in items),
        )


def _added(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    """Adds ``message`` to ``batch``; False when it does not fit (the batch is left as it was)."""
    try:
        batch.add_message(message)
    except ValueError:  # MessageSizeExceededError: the batch is full (or the message alone is too large)
        return False
    return True
