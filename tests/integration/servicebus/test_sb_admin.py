"""The administration client (`ServiceBusAdministrationClient`, sync and aio) against the emulator's HTTPS API.

The SDK speaks `https://<host:port of Endpoint>` even for an emulator connection string; the emulator answers
TLS on its AMQP port with a certificate from its local CA (`<data dir>/ca.pem`), which the clients here trust
through `connection_verify` or `REQUESTS_CA_BUNDLE`, as a user would.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio.management import ServiceBusAdministrationClient as AsyncAdministrationClient
from azure.servicebus.exceptions import MessagingEntityDisabledError, MessagingEntityNotFoundError
from azure.servicebus.management import (
    CorrelationRuleFilter,
    EntityStatus,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from tests.fixtures.servicebus import ServiceBusEmulator, ServiceBusFactory
from tests.integration.servicebus.conftest import queue, write_config
from tests.integration.servicebus.sbhelp import admin, bodies, ca_file, client, take


def test_runtime_properties_count_active_dead_lettered_and_scheduled_messages(sb: ServiceBusEmulator) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    with client(sb) as c:
        with c.get_queue_sender("admin-depth") as sender:
            sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(5)])
            sender.schedule_messages(ServiceBusMessage("later"), datetime.now(UTC) + timedelta(hours=1))
        with c.get_queue_receiver("admin-depth", max_wait_time=2) as receiver:
            (first, second) = receiver.receive_messages(max_message_count=2, max_wait_time=2)
            receiver.dead_letter_message(first, reason="bad")
            receiver.abandon_message(second)  # MaxDeliveryCount 1: dead-lettered too
        with c.get_topic_sender("admin-topic") as sender:
            red = ServiceBusMessage("r", application_properties={"color": "red"})
            sender.send_messages([red, ServiceBusMessage("x")])

    with admin(sb) as a:
        q = a.get_queue_runtime_properties("admin-depth")
        assert (q.active_message_count, q.dead_letter_message_count, q.scheduled_message_count) == (3, 2, 1)
        assert q.total_message_count == 6
        assert q.transfer_message_count == 0 and q.transfer_dead_letter_message_count == 0
        assert q.size_in_bytes > 0
        assert q.created_at_utc is not None and q.accessed_at_utc is not None and q.accessed_at_utc >= before
        subs = {s.name: s for s in a.list_subscriptions_runtime_properties("admin-topic")}
        assert {n: s.active_message_count for n, s in subs.items()} == {"all": 2, "red": 1, "by-label": 0}
        red = a.get_subscription_runtime_properties("admin-topic", "red")
        assert (red.active_message_count, red.dead_letter_message_count) == (1, 0)
        topic = a.get_topic_runtime_properties("admin-topic")
        assert topic.subscription_count == 3 and topic.size_in_bytes > 0
        queues = {p.name: p for p in a.list_queues_runtime_properties()}
        assert queues["admin-depth"].dead_letter_message_count == 2

    with client(sb) as c:
        assert sorted(bodies(take(c, "admin-depth", dead_letter=True))) == ["m0", "m1"]
    with admin(sb) as a:
        assert a.get_queue_runtime_properties("admin-depth").dead_letter_message_count == 0


def test_configured_entities_are_described_as_configured(sb: ServiceBusEmulator) -> None:
    with admin(sb) as a:
        renew = a.get_queue("auto-renew")
        assert renew.lock_duration == timedelta(seconds=5)
        assert renew.requires_session is False and renew.max_delivery_count == 10
        assert a.get_queue("sessions").requires_session is True
        assert a.get_queue("dedup").requires_duplicate_detection is True
        assert a.get_queue("ttl-dlq").default_message_time_to_live == timedelta(seconds=1)
        assert a.get_queue("forward-in").forward_to.endswith("/forward-out")
        assert {"plain", "admin-depth", "sessions"} <= {q.name for q in a.list_queues()}
        assert {"events", "admin-topic"} <= {t.name for t in a.list_topics()}
        rules = {r.name: r for r in a.list_rules("admin-topic", "red")}
        assert isinstance(rules["red"].filter, SqlRuleFilter) and rules["red"].filter.sql_expression == "color = 'red'"
        assert isinstance(rules["red"].action, SqlRuleAction) and rules["red"].action.sql_expression == "SET seen = 1"
        label = a.get_rule("admin-topic", "by-label", "label").filter
        assert isinstance(label, CorrelationRuleFilter)
        assert (label.label, dict(label.properties)) == ("urgent", {"size": "big"})
        assert isinstance(a.get_rule("admin-topic", "all", "$Default").filter, TrueRuleFilter)
        assert a.get_namespace_properties().name == "sbemulatorns"


def test_create_update_delete_queue_and_azure_errors(sb: ServiceBusEmulator) -> None:
    with admin(sb) as a:
        created = a.create_queue(
            "made-at-runtime", lock_duration=timedelta(seconds=10), max_delivery_count=3, requires_session=False,
            user_metadata="owner=tests", max_size_in_megabytes=2048,
        )  # fmt: skip
        assert (created.lock_duration, created.max_delivery_count) == (timedelta(seconds=10), 3)
        with pytest.raises(ResourceExistsError):
            a.create_queue("made-at-runtime")
        props = a.get_queue("made-at-runtime")
        assert (props.user_metadata, props.max_size_in_megabytes) == ("owner=tests", 2048)
        props.max_delivery_count = 7
        props.dead_lettering_on_message_expiration = True
        a.update_queue(props)
        updated = a.get_queue("made-at-runtime")
        assert (updated.max_delivery_count, updated.dead_lettering_on_message_expiration) == (7, True)
        assert updated.user_metadata == "owner=tests"

        with client(sb) as c:
            with c.get_queue_sender("made-at-runtime") as sender:
                sender.send_messages(ServiceBusMessage("works"))
            assert bodies(take(c, "made-at-runtime")) == ["works"]

        a.delete_queue("made-at-runtime")
        assert "made-at-runtime" not in {q.name for q in a.list_queues()}
        with pytest.raises(ResourceNotFoundError):
            a.get_queue("made-at-runtime")
        with pytest.raises(ResourceNotFoundError):
            a.get_queue_runtime_properties("made-at-runtime")
        with pytest.raises(ResourceNotFoundError):
            a.delete_queue("made-at-runtime")
        with pytest.raises(ResourceNotFoundError):
            a.update_queue(updated)
        with pytest.raises(ResourceNotFoundError):
            a.get_subscription("admin-topic", "missing")
        with pytest.raises(ResourceNotFoundError):
            a.get_rule("admin-topic", "red", "missing")
    with client(sb) as c, pytest.raises(MessagingEntityNotFoundError), c.get_queue_sender("made-at-runtime") as s:
        s.send_messages(ServiceBusMessage("nowhere"))


def test_bad_properties_are_refused_like_in_the_config_file(sb: ServiceBusEmulator) -> None:
    with admin(sb) as a:
        with pytest.raises(Exception, match="LockDuration"):
            a.create_queue("too-long-lock", lock_duration=timedelta(minutes=6))
        with pytest.raises(Exception, match="ForwardTo"):
            a.create_queue("forward-nowhere", forward_to="no-such-queue")
        with pytest.raises(ResourceNotFoundError):
            a.get_queue("too-long-lock")


def test_topics_subscriptions_and_rules_at_runtime_route_messages(sb: ServiceBusEmulator) -> None:
    with admin(sb) as a:
        a.create_topic("routes", default_message_time_to_live=timedelta(hours=1))
        a.create_subscription("routes", "model-a")
        a.create_subscription("routes", "model-b")
        a.create_subscription("routes", "sessions", requires_session=True)
        a.delete_rule("routes", "model-a", "$Default")
        a.create_rule("routes", "model-a", "by-model", filter=SqlRuleFilter("model = 'a'"))
        a.delete_rule("routes", "model-b", "$Default")
        a.create_rule(
            "routes", "model-b", "by-property",
            filter=CorrelationRuleFilter(properties={"model": "b", "version": 2}),
            action=SqlRuleAction("SET routed = 'yes'"),
        )  # fmt: skip
        with pytest.raises(ResourceExistsError):
            a.create_rule("routes", "model-a", "by-model", filter=SqlRuleFilter("1=1"))
        with pytest.raises(ResourceExistsError):
            a.create_subscription("routes", "model-a")
        rule = a.get_rule("routes", "model-b", "by-property")
        assert dict(rule.filter.properties) == {"model": "b", "version": 2}
        rule.filter = SqlRuleFilter("model = 'b'")
        a.update_rule("routes", "model-b", rule)
        assert a.get_rule("routes", "model-b", "by-property").filter.sql_expression == "model = 'b'"
        sub = a.get_subscription("routes", "model-a")
        sub.max_delivery_count = 2
        a.update_subscription("routes", sub)
        assert a.get_subscription("routes", "model-a").max_delivery_count == 2
        assert [s.name for s in a.list_subscriptions("routes")] == ["model-a", "model-b", "sessions"]
        assert a.get_topic("routes").default_message_time_to_live == timedelta(hours=1)

        with client(sb) as c:
            with c.get_topic_sender("routes") as sender:
                for model in "aab":
                    sender.send_messages(ServiceBusMessage(model, application_properties={"model": model}))
            assert bodies(take(c, "routes", "model-a")) == ["a", "a"]
            (b,) = take(c, "routes", "model-b")
            assert str(b) == "b" and b.application_properties[b"routed"] == b"yes"

        a.delete_subscription("routes", "model-b")
        assert [s.name for s in a.list_subscriptions("routes")] == ["model-a", "sessions"]
        a.delete_topic("routes")
        with pytest.raises(ResourceNotFoundError):
            a.get_subscription("routes", "model-a")


def test_sql_filter_parameters_are_bound_and_shown_as_given(sb: ServiceBusEmulator) -> None:
    with admin(sb) as a:
        a.create_topic("parameters")
        a.create_subscription("parameters", "matching")
        a.delete_rule("parameters", "matching", "$Default")
        given = SqlRuleFilter(
            "kind = @kind AND size > @size AND note = 'at @kind'", parameters={"@kind": "it's", "@size": 2}
        )
        a.create_rule("parameters", "matching", "bound", filter=given)
        rule = a.get_rule("parameters", "matching", "bound")
        assert rule.filter.sql_expression == given.sql_expression
        assert dict(rule.filter.parameters) == {"@kind": "it's", "@size": 2}
        with client(sb) as c:
            with c.get_topic_sender("parameters") as sender:
                sender.send_messages([
                    ServiceBusMessage("yes", application_properties={"kind": "it's", "size": 3, "note": "at @kind"}),
                    ServiceBusMessage("small", application_properties={"kind": "it's", "size": 1, "note": "at @kind"}),
                ])  # fmt: skip
            assert bodies(take(c, "parameters", "matching")) == ["yes"]
        with pytest.raises(Exception, match="@missing"):
            a.create_rule("parameters", "matching", "unbound", filter=SqlRuleFilter("kind = @missing"))
        a.delete_topic("parameters")


def test_disabled_entities_refuse_senders_and_receivers(sb: ServiceBusEmulator) -> None:
    with admin(sb) as a:
        a.create_queue("switched", status=EntityStatus.DISABLED)
        a.create_topic("switched-topic")
        a.create_subscription("switched-topic", "paused", status=EntityStatus.RECEIVE_DISABLED)
        assert a.get_queue("switched").status == EntityStatus.DISABLED
        with client(sb, retry_total=0) as c:
            with pytest.raises(MessagingEntityDisabledError), c.get_queue_sender("switched") as sender:
                sender.send_messages(ServiceBusMessage("refused"))
            with c.get_topic_sender("switched-topic") as sender:
                sender.send_messages(ServiceBusMessage("kept"))  # the topic is active; the subscription stores it
            receiver = c.get_subscription_receiver("switched-topic", "paused", max_wait_time=1)
            with pytest.raises(MessagingEntityDisabledError), receiver:
                receiver.receive_messages(max_wait_time=1)
        queue_props = a.get_queue("switched")
        queue_props.status = EntityStatus.ACTIVE
        a.update_queue(queue_props)
        sub = a.get_subscription("switched-topic", "paused")
        sub.status = EntityStatus.ACTIVE
        a.update_subscription("switched-topic", sub)
        with client(sb) as c:
            with c.get_queue_sender("switched") as sender:
                sender.send_messages(ServiceBusMessage("accepted"))
            assert bodies(take(c, "switched")) == ["accepted"]
            assert bodies(take(c, "switched-topic", "paused")) == ["kept"]
        a.delete_queue("switched")
        a.delete_topic("switched-topic")


def test_listing_pages_past_one_hundred_entities(sb: ServiceBusEmulator) -> None:
    names = [f"page-{i:03d}" for i in range(105)]
    with admin(sb) as a:
        for name in names:
            a.create_queue(name)
        try:
            listed = [q.name for q in a.list_queues() if q.name.startswith("page-")]
            assert listed == names
        finally:
            for name in names:
                a.delete_queue(name)


def test_async_administration_client(sb: ServiceBusEmulator) -> None:
    async def scenario() -> tuple[int, list[str], int]:
        async with AsyncAdministrationClient.from_connection_string(
            sb.connection_string, connection_verify=ca_file(sb)
        ) as a:
            await a.create_queue("aio-made")
            await a.create_subscription("admin-topic", "aio-sub")
            runtime = await a.get_subscription_runtime_properties("admin-topic", "aio-sub")
            names = [q.name async for q in a.list_queues()]
            await a.delete_subscription("admin-topic", "aio-sub")
            await a.delete_queue("aio-made")
            try:
                await a.get_queue("aio-made")
            except ResourceNotFoundError:
                gone = 1
            else:
                gone = 0
            return runtime.active_message_count, names, gone

    active, names, gone = asyncio.run(scenario())
    assert active == 0 and "aio-made" in names and gone == 1


def test_requests_ca_bundle_is_enough_and_untrusted_clients_are_refused(
    sb: ServiceBusEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    untrusting = ServiceBusAdministrationClient.from_connection_string(sb.connection_string)
    with untrusting as a, pytest.raises(ServiceRequestError):  # the emulator's CA is not in the default trust store
        a.get_queue("plain")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file(sb))
    with ServiceBusAdministrationClient.from_connection_string(sb.connection_string) as a:
        assert a.get_queue("plain").name == "plain"
    # The bundle next to it holds the public CAs too, so a process pointed at it trusts both.
    bundle = Path(ca_file(sb)).with_name("ca-bundle.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    with ServiceBusAdministrationClient.from_connection_string(sb.connection_string) as a:
        assert a.get_queue("plain").name == "plain"
    public = bundle.read_text().count("BEGIN CERTIFICATE")
    assert public > 50 and Path(ca_file(sb)).read_text() in bundle.read_text()
    # The certificate names the loopback address and localhost, and chains to ca.pem.
    context = ssl.create_default_context(cafile=ca_file(sb))
    request = urllib.request.Request(f"https://localhost:{sb.port}/plain?api-version=2021-05")
    with pytest.raises(urllib.error.HTTPError) as refused:  # TLS is fine; no token means 401
        urllib.request.urlopen(request, context=context, timeout=10)
    assert refused.value.code == 401


def test_wrong_key_is_refused(sb: ServiceBusEmulator) -> None:
    wrong = sb.connection_string.replace("SharedAccessKey=SAS_KEY_VALUE", "SharedAccessKey=not-the-key")
    wrong_key = ServiceBusAdministrationClient.from_connection_string(wrong, connection_verify=ca_file(sb))
    with wrong_key as a, pytest.raises(ClientAuthenticationError, match="signature does not match"):
        a.get_queue("plain")


def test_runtime_entities_survive_kill_9_and_keep_the_ca(servicebus_factory: ServiceBusFactory, tmp_path: Path) -> None:
    sb = servicebus_factory(write_config(tmp_path / "entities.json", [queue("configured"), queue("dropped")]))
    ca_before = Path(ca_file(sb)).read_bytes()
    with admin(sb) as a:
        a.create_queue("kept", max_delivery_count=4)
        a.create_topic("kept-topic")
        a.create_subscription("kept-topic", "sub")
        a.create_rule("kept-topic", "sub", "only-blue", filter=SqlRuleFilter("color = 'blue'"))
        a.delete_rule("kept-topic", "sub", "$Default")
        configured = a.get_queue("configured")
        configured.max_delivery_count = 9
        a.update_queue(configured)
        a.delete_queue("dropped")
    with client(sb) as c, c.get_queue_sender("kept") as sender:
        sender.send_messages(ServiceBusMessage("survivor"))
    sb.kill()
    sb.start()
    assert Path(ca_file(sb)).read_bytes() == ca_before
    with admin(sb) as a:
        assert a.get_queue("kept").max_delivery_count == 4
        assert a.get_queue("configured").max_delivery_count == 9
        with pytest.raises(ResourceNotFoundError):
            a.get_queue("dropped")
        assert [r.name for r in a.list_rules("kept-topic", "sub")] == ["only-blue"]
        assert a.get_queue_runtime_properties("kept").active_message_count == 1
    with client(sb) as c:
        assert bodies(take(c, "kept")) == ["survivor"]
