"""Small helpers shared by the emulator tests (SDK clients tuned to keep the tests quick)."""

from __future__ import annotations

from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.management import ServiceBusAdministrationClient

from tests.fixtures.servicebus import ServiceBusEmulator


class QuickClient(ServiceBusClient):
    """The SDK client with keep_alive=0 on every sender and receiver.

    The keep-alive thread sleeps in 1 s steps and is joined on close, so without this every close
    would take about a second (the setting is per handler; the client's own value is not passed on).
    """

    def get_queue_sender(self, queue_name: str, **kwargs: Any) -> Any:
        return super().get_queue_sender(queue_name, keep_alive=0, **kwargs)

    def get_topic_sender(self, topic_name: str, **kwargs: Any) -> Any:
        return super().get_topic_sender(topic_name, keep_alive=0, **kwargs)

    def get_queue_receiver(self, queue_name: str, **kwargs: Any) -> Any:
        return super().get_queue_receiver(queue_name, keep_alive=0, **kwargs)

    def get_subscription_receiver(self, topic_name: str, subscription_name: str, **kwargs: Any) -> Any:
        return super().get_subscription_receiver(topic_name, subscription_name, keep_alive=0, **kwargs)


def ca_file(sb: ServiceBusEmulator) -> str:
    """The emulator's local CA certificate (written on its first start), for `connection_verify=`."""
    return str(sb.data_dir / "ca.pem")


def admin(sb: ServiceBusEmulator) -> ServiceBusAdministrationClient:
    return ServiceBusAdministrationClient.from_connection_string(sb.connection_string, connection_verify=ca_file(sb))


def client(sb: ServiceBusEmulator, retry_total: int = 1) -> ServiceBusClient:
    return QuickClient.from_connection_string(sb.connection_string, retry_total=retry_total)


def take(
    c: ServiceBusClient,
    name: str,
    subscription: str | None = None,
    *,
    dead_letter: bool = False,
    wait: float = 0.5,
    count: int | None = None,
) -> list[ServiceBusReceivedMessage]:
    """Everything waiting on a queue (or a topic's subscription), removed as it is read.

    Without ``count`` it reads until nothing arrives for ``wait`` seconds; with ``count`` it stops as
    soon as that many messages arrived (or after ``wait`` seconds).
    """
    kwargs: dict[str, Any] = {
        "receive_mode": ServiceBusReceiveMode.RECEIVE_AND_DELETE,
        "max_wait_time": wait,
        "prefetch_count": 100,  # with prefetch the SDK starts no keep-alive thread either
    }
    if dead_letter:
        kwargs["sub_queue"] = ServiceBusSubQueue.DEAD_LETTER
    if subscription is None:
        receiver = c.get_queue_receiver(name, **kwargs)
    else:
        receiver = c.get_subscription_receiver(name, subscription, **kwargs)
    with receiver:
        if count is None:
            return list(receiver)
        return receiver.receive_messages(max_message_count=count, max_wait_time=wait)


def bodies(messages: list[ServiceBusReceivedMessage]) -> list[str]:
    return [str(m) for m in messages]


def drain(sb: ServiceBusEmulator, queue: str, wait: float = 0.5) -> list[str]:
    with client(sb) as c:
        return bodies(take(c, queue, wait=wait))
