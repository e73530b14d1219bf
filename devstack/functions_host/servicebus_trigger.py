"""Service Bus queue/topic triggers with the real azure-servicebus SDK, peek-lock.

Each receiving thread owns its client and receiver; one :class:`LockRenewer` thread per trigger keeps the
locks of the messages being processed (and of the sessions held) while the function runs. Plain entities get
``maxConcurrentCalls`` threads; session entities get ``maxConcurrentSessions`` threads that each accept the
next available session and keep it until it has been idle for ``sessionIdleTimeout``. With
``autoCompleteMessages`` (host.json, or the binding's own setting) the host completes a message when the
function succeeds and abandons it when it fails; with it off the host settles nothing and stops renewing the
lock when the function returns, so an unsettled message comes back after its lock expires (the Python model
has no message actions here).

A ``cardinality="many"`` trigger without sessions runs as the Functions runtime's batch listener does: one
receive loop (``maxConcurrentCalls`` does not apply to batches), up to ``maxMessageBatchSize`` messages per
invocation, and no lock renewal (``maxAutoLockRenewalDuration`` applies only to single-message functions), so
a batch must be settled within the entity's ``LockDuration``; the whole batch is completed when the function
succeeds and abandoned when it fails.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiver,
)
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
)
from opentelemetry import context as otel_context

from shared.contracts import PROP_REQUEST_ID
from shared.telemetry import logs, propagation

from . import clients
from .indexing import FunctionSpec
from .invoker import Invoker
from .lock_renewal import LockRenewer
from .servicebus_message import to_function_message, to_function_messages
from .servicebus_output import ServiceBusOutputs
from .session_accept import SessionAcceptGate
from .session_receiver import SessionAcceptor

logger = logging.getLogger(__name__)

_RECEIVE_WAIT = 1.0  # short waits keep threads responsive to shutdown
_BATCH_WAIT = 0.02  # how long a batch waits for more after its first message (the .NET client's batch wait)
_SESSION_ACCEPT_WAIT = 2
_SESSION_CYCLE = _SESSION_ACCEPT_WAIT + 0.05  # accept wait + the receiver's open (see session_receiver)
_SESSION_OPEN_TIMEOUT = _SESSION_ACCEPT_WAIT + 5.0  # the broker answers an accept after its wait; beyond: gone
_RECONNECT_PAUSE = 1.0
_IDLE_ACCEPTERS = 2  # session threads that keep accepting while no session comes (see session_accept)
_LOCAL_CONCURRENCY_CAP = 8
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


def request_id_of(message: ServiceBusReceivedMessage) -> str | None:
    properties = message.application_properties or {}
    raw = properties.get(PROP_REQUEST_ID.encode(), properties.get(PROP_REQUEST_ID))
    request_id = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return request_id if isinstance(request_id, str) else None


@contextlib.contextmanager
def message_log_scope(message: ServiceBusReceivedMessage | None) -> Iterator[None]:
    """Log records inside carry the message's trace id (its ``traceparent`` / ``Diagnostic-Id``) and request id."""
    properties = (message.application_properties if message is not None else None) or {}
    request_id = request_id_of(message) if message is not None else None
    parent = propagation.context_from(properties)
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with logs.request_scope(request_id):
            yield
    finally:
        if token is not None:
            otel_context.detach(token)


def _prefetched(receiver: ServiceBusReceiver) -> int:
    """Messages the receiver holds already (azure-servicebus keeps no public count of them; 0 if not found)."""
    buffer = getattr(getattr(receiver, "_handler", None), "_received_messages", None)
    try:
        return int(buffer.qsize()) if buffer is not None else 0
    except (AttributeError, TypeError, ValueError):
        return 0


def _withdraw_credit(receiver: ServiceBusReceiver) -> None:
    """Takes back the link credit a receive left unused, so the broker sends nothing until the next receive.

    Without prefetch the SDK gives the link as much credit as a receive asks for and leaves what the receive did
    not use; the broker keeps sending into it, and the SDK releases every message that arrives outside a receive
    call (as the host settles a batch, say), which the broker sends straight back while credit is left: a
    transfer and a release each time, on both sides, for messages the next receive takes anyway. A receiver
    runs on one thread, so the flow frame goes out between two of its own calls.
    """
    receiver._amqp_transport.reset_link_credit(receiver._handler, 0)


def parse_timespan(value: Any, setting: str) -> float:
    """Seconds from a .NET TimeSpan string (``[d.]hh:mm:ss``) or a number."""
    if isinstance(value, int | float):
        return float(value)
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise ValueError(f"host.json {setting}: '{value}' is not a TimeSpan like 00:05:00")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class ServiceBusOptions:
    auto_complete: bool = True
    max_concurrent_calls: int = 8
    max_concurrent_sessions: int = 8
    max_lock_renewal: float = 300.0
    max_message_batch_size: int = 1000
    session_idle_timeout: float = 60.0
    prefetch_count: int = 0


def servicebus_options(host_json: dict[str, Any], cpu_count: int) -> ServiceBusOptions:
    """``extensions.serviceBus`` (v5 names, with the v2-era ``messageHandlerOptions`` names as a fallback).

    When a concurrency is not set the local host caps the runtime's default (16 x cores calls, 8 sessions) at 8,
    since each receiving thread holds its own connection.
    """
    extensions = host_json.get("extensions") or {}
    section = dict(extensions.get("serviceBus") or {})
    legacy = dict(section.get("messageHandlerOptions") or {})
    legacy_sessions = dict(section.get("sessionHandlerOptions") or {})

    def pick(*candidates: Any, default: Any) -> Any:
        return next((c for c in candidates if c is not None), default)

    return ServiceBusOptions(
        auto_complete=bool(pick(section.get("autoCompleteMessages"), legacy.get("autoComplete"), default=True)),
        max_concurrent_calls=int(
            pick(section.get("maxConcurrentCalls"), legacy.get("maxConcurrentCalls"),
                 default=min(16 * cpu_count, _LOCAL_CONCURRENCY_CAP))
        ),
        max_concurrent_sessions=int(
            pick(section.get("maxConcurrentSessions"), legacy_sessions.get("maxConcurrentSessions"),
                 default=_LOCAL_CONCURRENCY_CAP)
        ),
        max_lock_renewal=parse_timespan(
            pick(section.get("maxAutoLockRenewalDuration"), legacy.get("maxAutoRenewDuration"), default="00:05:00"),
            "extensions.serviceBus.maxAutoLockRenewalDuration",
        ),
        max_message_batch_size=int(section.get("maxMessageBatchSize") or 1000),
        session_idle_timeout=parse_timespan(
            pick(section.get("sessionIdleTimeout"), default="00:01:00"), "extensions.serviceBus.sessionIdleTimeout"
        ),
        prefetch_count=int(section.get("prefetchCount") or 0),
    )  # fmt: skip


class ServiceBusTrigger:
    def __init__(self, spec: FunctionSpec, invoker: Invoker, stop: threading.Event, options: ServiceBusOptions) -> None:
        self.spec = spec
        self._invoker = invoker
        self._stop = stop
        trigger = spec.trigger
        binding_auto = trigger.get("autoCompleteMessages")
        self.auto_complete = options.auto_complete if binding_auto is None else bool(binding_auto)
        self.sessions = bool(trigger.get("isSessionsEnabled"))
        self.many = str(trigger.get("cardinality", "one")).lower() == "many"
        self._options = options
        self._connection = spec.connection(trigger)
        self.queue = trigger.get("queueName")
        self.topic = trigger.get("topicName")
        self.subscription = trigger.get("subscriptionName")
        annotation = spec.trigger_annotation
        if annotation is not None and not ServiceBusMessageInConverter.check_input_type_annotation(annotation):
            # The Python worker refuses to load such a function ("does not match its Python annotation").
            raise ValueError(
                f"function '{spec.name}': the Service Bus trigger's parameter is annotated {annotation!r}, which "
                "azure.functions' converter does not accept (a batch needs typing.List[func.ServiceBusMessage])"
            )
        if not self.queue and not (self.topic and self.subscription):
            raise ValueError(
                f"function '{spec.name}': a Service Bus trigger needs queueName or topicName+subscriptionName"
            )
        if not self.auto_complete:
            logger.warning(
                "function '%s': autoCompleteMessages is off; the host will not settle its messages, "
                "so each one is redelivered when its lock expires",
                spec.name,
            )
        # The runtime runs a batch function's receive loop one batch at a time (per instance).
        single = 1 if self.many else options.max_concurrent_calls
        count = max(1, options.max_concurrent_sessions if self.sessions else single)
        self._threads = [
            threading.Thread(
                target=partial(self._session_loop, i) if self.sessions else self._receive_loop,
                name=f"sb-{spec.name}-{i}",
                daemon=True,
            )
            for i in range(count)
        ]
        self._locks: LockRenewer | None = None
        self._accepts = SessionAcceptGate(_IDLE_ACCEPTERS, _SESSION_CYCLE)

    @property
    def entity(self) -> str:
        return str(self.queue) if self.queue else f"{self.topic}/Subscriptions/{self.subscription}"

    def start(self) -> None:
        self._locks = LockRenewer(self.spec.name, self._options.max_lock_renewal)
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._locks is not None:
            self._locks.close()

    @property
    def locks(self) -> LockRenewer:
        if self._locks is None:
            raise RuntimeError(f"the Service Bus trigger of '{self.spec.name}' was not started")
        return self._locks

    def _receiver(self, client: ServiceBusClient, **kwargs: Any) -> ServiceBusReceiver:
        common: dict[str, Any] = {"prefetch_count": self._options.prefetch_count} | kwargs
        if self.queue:
            return client.get_queue_receiver(str(self.queue), **common)
        return client.get_subscription_receiver(str(self.topic), str(self.subscription), **common)

    def _receive_loop(self) -> None:
        with ServiceBusOutputs() as outputs:
            while not self._stop.is_set():
                try:
                    # A batch receiver's socket timeout (the SDK's default 0.2 s) bounds its batch wait.
                    options = {"socket_timeout": _BATCH_WAIT} if self.many else {}
                    with clients.servicebus(self._connection) as client, self._receiver(client, **options) as receiver:
                        while not self._stop.is_set():
                            self._receive_once(receiver, outputs)
                except Exception as exc:  # noqa: BLE001 - a receiver outlives any connection error
                    logger.warning("Service Bus trigger '%s' on %s: %s; reconnecting", self.spec.name, self.entity, exc)
                    self._stop.wait(2.0)

    def _session_loop(self, index: int) -> None:
        # Between two accepts a thread reopens its receiver, during which it accepts nothing. Threads started
        # together would stay in step and leave the same gap every cycle, so the accepting threads start at their
        # own offsets and some thread is always waiting for the next session; the others wait, parked, until a
        # session is accepted (see session_accept).
        delay = self._accepts.first(index)
        parked = delay is None
        self._stop.wait(delay or 0.0)
        with ServiceBusOutputs() as outputs:
            while not self._stop.is_set():
                try:
                    # Without retries the SDK honours the accept wait; with them it waits four times as long.
                    with (
                        clients.servicebus(self._connection, retry_total=0) as client,
                        SessionAcceptor() as acceptor,
                    ):
                        while not self._stop.is_set():
                            if parked and not self._accepts.wait(index, _RECEIVE_WAIT):
                                continue
                            parked = False
                            if self._one_session(client, acceptor, outputs, index):
                                continue
                            delay = self._accepts.found_nothing(index)
                            parked = delay is None
                            self._stop.wait(delay or 0.0)
                except Exception as exc:  # noqa: BLE001 - a receiver outlives any connection error
                    logger.warning("Service Bus trigger '%s' on %s: %s; reconnecting", self.spec.name, self.entity, exc)
                    self._stop.wait(2.0)

    def _one_session(
        self, client: ServiceBusClient, acceptor: SessionAcceptor, outputs: ServiceBusOutputs, index: int
    ) -> bool:
        """Accepts the next session and takes its messages until it is idle; False when none came in time."""
        # Closing a receiver joins its keep-alive thread, which sleeps in 1 s steps (half a second per session
        # on average); the SDK starts none for a prefetching receiver with keep_alive=0. A session receiver
        # holds the session's lock anyway, so prefetching one of its messages takes nothing from anyone.
        self._accepts.begin(index)
        new_receiver = partial(
            self._receiver,
            client,
            session_id=NEXT_AVAILABLE_SESSION,
            max_wait_time=_SESSION_ACCEPT_WAIT,
            # a batch function's session receiver prefetches a batch, which its receive then takes at once
            prefetch_count=max(self._options.max_message_batch_size if self.many else 1, self._options.prefetch_count),
            keep_alive=0,
        )
        try:
            # accepts the next session with messages, or times out (entering the receiver then opens nothing)
            receiver = acceptor.accept(new_receiver, _SESSION_OPEN_TIMEOUT)
            with receiver, self.locks.session(receiver):
                self._accepts.accepted(index)
                logger.debug("function '%s' accepted session %s", self.spec.name, receiver.session.session_id)
                idle_since = time.monotonic()
                while not self._stop.is_set():
                    idle_left = self._options.session_idle_timeout - (time.monotonic() - idle_since)
                    if idle_left <= 0:
                        break
                    if self._receive_once(receiver, outputs, wait=min(_RECEIVE_WAIT, idle_left)):
                        idle_since = time.monotonic()
        except OperationTimeoutError:
            return False  # no session available right now
        except ServiceBusError as exc:
            logger.warning("function '%s': session ended: %s", self.spec.name, exc)
            acceptor.drop()  # the next session gets a new connection
            if isinstance(exc, (ServiceBusConnectionError, ServiceBusCommunicationError)):
                # session receivers do not retry: pause, or an unreachable broker turns this into a busy loop
                self._stop.wait(_RECONNECT_PAUSE)
        return True

    def _receive_once(
        self, receiver: ServiceBusReceiver, outputs: ServiceBusOutputs, wait: float = _RECEIVE_WAIT
    ) -> bool:
        batch = self._options.max_message_batch_size if self.many else 1
        # The .NET client the Functions runtime uses returns a batch 20 ms after its first message. The Python
        # SDK's receive waits 0.2 s after the first message for the rest of the batch (and its last socket poll
        # can add up to 0.2 s more), which every isolated message would pay. So a batch starts with one message.
        messages = receiver.receive_messages(max_message_count=1 if self.many else batch, max_wait_time=wait)
        if messages and batch > 1:
            if self.sessions:
                # what the receiver has already prefetched of the session, taken without waiting
                more, more_wait = min(_prefetched(receiver), batch - 1), wait
            else:
                # whatever else arrives within the batch wait (the receiver's socket timeout bounds the last poll)
                more, more_wait = batch - 1, _BATCH_WAIT
            if more:
                filled = receiver.receive_messages(max_message_count=more, max_wait_time=more_wait)
                if len(filled) < more and not self.sessions and self._options.prefetch_count == 0:
                    _withdraw_credit(receiver)
                messages += filled
        if not messages:
            return False
        if self.many:
            self._handle(receiver, messages, outputs)
        else:
            for message in messages:
                self._handle(receiver, [message], outputs)
        return True

    def _handle(
        self, receiver: ServiceBusReceiver, messages: list[ServiceBusReceivedMessage], outputs: ServiceBusOutputs
    ) -> None:
        # The host's lines about one message (converting, invoking, settling it) carry its trace and the request
        # its ``request_id`` property names; a batch of several has no single request, unless all its messages name
        # the same one (a retry copy delivered beside a resubmission of the same file).
        one = messages[0] if len({request_id_of(m) for m in messages}) == 1 else None
        with message_log_scope(one):
            self._handle_in_scope(receiver, messages, outputs)

    def _handle_in_scope(
        self, receiver: ServiceBusReceiver, messages: list[ServiceBusReceivedMessage], outputs: ServiceBusOutputs
    ) -> None:
        try:
            value = to_function_messages(messages) if self.many else to_function_message(messages[0])
        except Exception as exc:  # noqa: BLE001 - a message the converter rejects must not stop the receiver
            logger.error("function '%s': cannot convert message %s: %s", self.spec.name, messages[0].message_id, exc)
            if self.auto_complete:
                self._settle(receiver, messages, succeeded=False)
            return
        reason = f"New ServiceBus message detected on '{self.entity}'."
        # Locks are renewed only while the function runs (a session's own lock covers its messages; a batch's
        # are not renewed, as in the runtime); without auto-complete the host settles nothing, so the lock is then
        # left to expire.
        with contextlib.ExitStack() as held:
            if not self.sessions and not self.many:
                for message in messages:
                    held.enter_context(self.locks.message(receiver, message))
            # The runtime's span for the invocation continues the (first) message's trace context.
            carrier = dict(messages[0].application_properties or {})
            result = self._invoker.invoke(self.spec, value, reason=reason, sb_outputs=outputs, trace_carrier=carrier)
        if self.auto_complete:
            self._settle(receiver, messages, result.succeeded)

    def _settle(self, receiver: ServiceBusReceiver, messages: list[ServiceBusReceivedMessage], succeeded: bool) -> None:
        for message in messages:
            try:
                if succeeded:
                    receiver.complete_message(message)
                else:
                    receiver.abandon_message(message)
            except ServiceBusError as exc:
                logger.warning(
                    "function '%s': could not settle message %s: %s", self.spec.name, message.message_id, exc
                )
