"""Service Bus depths (status page and metric export) read from the emulator with the real administration client,
over its HTTPS API and local CA as the functions host reads them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from shared.config import SettingsReader
from shared.status_sources import ServiceBusDepths

REQUESTS = "inference-requests"


def scoring_depth(reader: ServiceBusDepths) -> int:
    return next(d.active for d in reader.depths() if (d.topic, d.subscription) == (REQUESTS, "scoring"))


def test_depths_follow_the_subscription_and_keep_their_client_until_closed(
    servicebus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(servicebus.data_dir / "ca.pem"))
    connection = SettingsReader({"ServiceBus": servicebus.connection_string}).servicebus_connection("ServiceBus")
    reader = ServiceBusDepths(connection, (REQUESTS,))
    before = scoring_depth(reader)
    kept = reader._local.admin
    message_id = uuid.uuid4().hex
    with ServiceBusClient.from_connection_string(servicebus.connection_string) as client:
        with client.get_topic_sender(REQUESTS) as sender:
            sender.send_messages(ServiceBusMessage(b"{}", message_id=message_id,
                                                   application_properties={"model": "default"}))  # fmt: skip
        try:
            assert scoring_depth(reader) == before + 1
            assert reader._local.admin is kept  # the second read went over the same client
            reader.close()
            assert reader._local.admin is None
            assert scoring_depth(reader) == before + 1  # a read after close opens a new client
            assert reader._local.admin is not kept
        finally:
            reader.close()
            with client.get_subscription_receiver(REQUESTS, "scoring", max_wait_time=5) as receiver:
                for received in receiver.receive_messages(max_message_count=before + 1, max_wait_time=5):
                    if received.message_id == message_id:
                        receiver.complete_message(received)
                    else:
                        receiver.abandon_message(received)
