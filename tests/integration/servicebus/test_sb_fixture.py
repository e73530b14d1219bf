"""The shared `servicebus` fixture: the emulator with the project's entities (infra/servicebus-entities.json)."""

from __future__ import annotations

import uuid

from azure.servicebus import ServiceBusClient, ServiceBusMessage

from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.servicebus.sbhelp import take


def test_project_entities_route_by_model(servicebus: ServiceBusEmulator) -> None:
    assert servicebus.connection_string.endswith("UseDevelopmentEmulator=true")
    assert servicebus.data_dir.is_dir()
    message_id = f"fixture-{uuid.uuid4()}"
    with ServiceBusClient.from_connection_string(servicebus.connection_string, retry_total=1) as c:
        with c.get_topic_sender("inference-requests") as sender:
            sender.send_messages(
                ServiceBusMessage("{}", message_id=message_id, application_properties={"model": "churn-v2"})
            )
        got = take(c, "inference-requests", "scoring-churn-v2", wait=2, count=1)
        assert [m.message_id for m in got] == [message_id]
        with c.get_subscription_receiver("inference-requests", "scoring") as scoring:
            assert message_id not in {m.message_id for m in scoring.peek_messages(max_message_count=100)}
