"""Turns a received ``azure.servicebus.ServiceBusReceivedMessage`` into the trigger data and metadata the host
gives the Python worker, then into ``func.ServiceBusMessage`` with azure.functions' own converter."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value


def _iso(moment: datetime.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timespan(delta: datetime.timedelta | None) -> str | None:
    # The worker parses "HH:MM:SS" or whole seconds; it cannot read .NET's "d.hh:mm:ss".
    if delta is None:
        return None
    seconds = int(delta.total_seconds())
    if seconds < 86400:
        return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return str(seconds)


def _json_value(value: Any) -> Any:
    value = _text(value)
    if isinstance(value, datetime.datetime):
        return _iso(value)
    if isinstance(value, uuid.UUID | datetime.timedelta):
        return str(value)
    return value


def properties_of(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    return {str(_text(k)): _json_value(v) for k, v in (message.application_properties or {}).items()}


def body_of(message: ServiceBusReceivedMessage) -> bytes:
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(bytes(part) for part in message.body)
    value = message.body
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return json.dumps(value, default=str).encode("utf-8") if not isinstance(value, str) else value.encode("utf-8")


def metadata_fields(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """The trigger metadata fields the worker reads, keyed as the host names them (None when absent)."""
    properties = properties_of(message)
    state = getattr(message.state, "value", message.state)
    return {
        "MessageId": _text(message.message_id),
        "SessionId": _text(message.session_id),
        "ContentType": _text(message.content_type),
        "CorrelationId": _text(message.correlation_id),
        # AMQP counts earlier deliveries (0 on the first); the runtime's .NET SDK adds 1, so the first is 1.
        "DeliveryCount": None if message.delivery_count is None else message.delivery_count + 1,
        "SequenceNumber": message.sequence_number,
        "EnqueuedSequenceNumber": message.enqueued_sequence_number,
        "EnqueuedTimeUtc": _iso(message.enqueued_time_utc),
        "ExpiresAtUtc": _iso(message.expires_at_utc),
        "LockedUntil": _iso(message.locked_until_utc),
        "ScheduledEnqueueTimeUtc": _iso(message.scheduled_enqueue_time_utc),
        "TimeToLive": _timespan(message.time_to_live),
        "LockToken": str(message.lock_token) if message.lock_token else None,
        "Label": _text(message.subject),
        "Subject": _text(message.subject),
        "To": _text(message.to),
        "ReplyTo": _text(message.reply_to),
        "ReplyToSessionId": _text(message.reply_to_session_id),
        "PartitionKey": _text(message.partition_key),
        "TransactionPartitionKey": None,
        "State": int(state) if state is not None else None,
        "DeadLetterSource": _text(message.dead_letter_source),
        "DeadLetterReason": _text(message.dead_letter_reason),
        "DeadLetterErrorDescription": _text(message.dead_letter_error_description),
        "ApplicationProperties": properties,
        "UserProperties": properties,
    }


def _datum(value: Any) -> meta.Datum:
    if isinstance(value, str):
        return meta.Datum(value, "string")
    return meta.Datum(json.dumps(value), "json")


def to_function_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    metadata = {k: _datum(v) for k, v in metadata_fields(message).items() if v is not None}
    data = meta.Datum(body_of(message), "bytes")
    decoded = ServiceBusMessageInConverter.decode(data, trigger_metadata=metadata)
    assert not isinstance(decoded, list)
    return decoded


def to_function_messages(messages: Sequence[ServiceBusReceivedMessage]) -> list[func.ServiceBusMessage]:
    """Cardinality ``many``: one body collection plus one ``<Field>Array`` per metadata field."""
    fields = [metadata_fields(m) for m in messages]
    metadata = {f"{name}Array": meta.Datum(json.dumps([f[name] for f in fields]), "json") for name in fields[0]}
    data = meta.Datum(SimpleNamespace(bytes=[body_of(m) for m in messages]), "collection_bytes")
    decoded = ServiceBusMessageInConverter.decode(data, trigger_metadata=metadata)
    assert isinstance(decoded, list)
    return list(decoded)
