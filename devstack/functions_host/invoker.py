"""Calls a user function the way the Python worker does: trigger argument, ``func.Out`` outputs, ``context``.

Sync functions run on the calling trigger thread; ``async def`` functions run on one shared event loop thread.
After the function returns, output values are encoded with azure.functions' own converters and Service Bus
outputs are sent by the host (as the runtime does) before the invocation counts as succeeded.

Tracing as with ``"telemetryMode": "OpenTelemetry"``: for a trigger the host traces (HTTP, Service Bus) the
invocation runs in a host span that continues the caller's W3C context (``traceparent``, else
``Diagnostic-Id``), ``context.trace_context`` carries that span, and it is the current OpenTelemetry context
while the function runs, as the Python worker attaches it. Blob and timer invocations get no span.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import azure.functions as func
from azure.functions import meta
from azure.functions._abc import RetryContext, TraceContext
from opentelemetry import context as otel_context
from opentelemetry import trace

from shared.telemetry import propagation

from .indexing import FunctionSpec
from .servicebus_output import ServiceBusOutputs

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETURN = "$return"
_TRACER = trace.get_tracer("devstack.functions_host")


class OutValue(func.Out[T], Generic[T]):
    """The value holder the worker passes for each output binding parameter."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[return-value]


class _TraceContext(TraceContext):
    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self._headers = headers or {}

    @property
    def trace_state(self) -> str:
        return self._headers.get(propagation.TRACESTATE, "")

    @property
    def trace_parent(self) -> str:
        return self._headers.get(propagation.TRACEPARENT, "")

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class InvocationContext(func.Context):
    """``func.Context`` for one invocation (no retry policy; the trace context of the host's span, if any)."""

    def __init__(
        self,
        invocation_id: str,
        function_name: str,
        function_directory: str,
        trace_headers: dict[str, str] | None = None,
    ) -> None:
        self._trace = _TraceContext(trace_headers)
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._thread_local = threading.local

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        raise NotImplementedError("retry policies are not supported by the local functions host")


@dataclass
class InvocationResult:
    invocation_id: str
    outputs: dict[str, meta.Datum] = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


class _AsyncRunner:
    """One event loop on a daemon thread, started on first use, for ``async def`` functions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="functions-async", daemon=True).start()
            loop = self._loop
        future: Future[Any] = asyncio.run_coroutine_threadsafe(factory(), loop)
        return future.result()

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None


def encode_output(binding: dict[str, Any], value: Any) -> meta.Datum | None:
    converter = meta.get_binding_registry().get(str(binding["type"]))
    if converter is None:
        raise TypeError(f"no converter for output binding type {binding['type']}")
    return converter.encode(value, expected_type=type(value))


class Invoker:
    def __init__(self, script_root: Path, function_timeout: float | None = None) -> None:
        self._directory = str(script_root.resolve())
        self._async = _AsyncRunner()
        self.function_timeout = function_timeout

    def close(self) -> None:
        self._async.close()

    def invoke(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        reason: str,
        sb_outputs: ServiceBusOutputs | None = None,
        trace_carrier: dict[Any, Any] | None = None,
        span_kind: trace.SpanKind = trace.SpanKind.CONSUMER,
    ) -> InvocationResult:
        """``trace_carrier`` (message properties or HTTP headers) is given for triggers the host traces."""
        if trace_carrier is None:
            return self._invoke(spec, trigger_value, reason, sb_outputs)
        parent = propagation.context_from(trace_carrier)
        attributes = {"faas.name": spec.name, "faas.trigger": str(spec.trigger_type)}
        span = _TRACER.start_span(
            f"Invoke {spec.name}", context=parent or otel_context.Context(), kind=span_kind, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = self._invoke(spec, trigger_value, reason, sb_outputs, propagation.current_headers())
            if result.error is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(result.error).__name__))
            return result
        finally:
            otel_context.detach(token)
            span.end()

    def _invoke(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        reason: str,
        sb_outputs: ServiceBusOutputs | None,
        trace_headers: dict[str, str] | None = None,
    ) -> InvocationResult:
        result = InvocationResult(invocation_id=str(uuid.uuid4()))
        logger.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, result.invocation_id)
        started = time.perf_counter()
        try:
            self._call(spec, trigger_value, result, trace_headers)
            self._send_servicebus(spec, result, sb_outputs)
        except Exception as exc:  # noqa: BLE001 - user code may raise anything; it fails the invocation only
            result.error = exc
        millis = (time.perf_counter() - started) * 1000
        if self.function_timeout is not None and millis > self.function_timeout * 1000:
            # The runtime would cancel the invocation and restart the worker; threads cannot be cancelled here.
            logger.warning(
                "Timeout value of %.0fs exceeded by function 'Functions.%s' (Id=%s); the local host lets it finish",
                self.function_timeout, spec.name, result.invocation_id,
            )  # fmt: skip
        if result.error is None:
            logger.info(
                "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", spec.name, result.invocation_id, millis
            )
        else:
            logger.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms): %s: %s",
                spec.name, result.invocation_id, millis, type(result.error).__name__, result.error,
                exc_info=result.error,
            )  # fmt: skip
        return result

    def _call(
        self, spec: FunctionSpec, trigger_value: Any, result: InvocationResult, trace_headers: dict[str, str] | None
    ) -> None:
        args: dict[str, Any] = {str(spec.trigger["name"]): trigger_value}
        outs: dict[str, OutValue[Any]] = {}
        for binding in spec.outputs:
            name = str(binding["name"])
            if name != RETURN:
                outs[name] = args[name] = OutValue()
        if "context" in spec.parameters and "context" not in args:
            args["context"] = InvocationContext(result.invocation_id, spec.name, self._directory, trace_headers)
        call = spec.user_function
        returned = self._async.run(lambda: call(**args)) if spec.is_async else call(**args)
        for binding in spec.outputs:
            name = str(binding["name"])
            value = returned if name == RETURN else outs[name].get()
            if value is None:
                continue  # an output never set is not sent, as with the worker
            datum = encode_output(binding, value)
            if datum is not None:
                result.outputs[name] = datum

    def _send_servicebus(
        self, spec: FunctionSpec, result: InvocationResult, sb_outputs: ServiceBusOutputs | None
    ) -> None:
        pending = [(b, result.outputs[b["name"]]) for b in spec.outputs if b["type"] == "serviceBus"]
        pending = [(b, d) for b, d in pending if b["name"] in result.outputs]
        if not pending:
            return
        if sb_outputs is not None:
            for binding, datum in pending:
                sb_outputs.send(spec, binding, datum)
            return
        with ServiceBusOutputs() as temporary:
            for binding, datum in pending:
                temporary.send(spec, binding, datum)
