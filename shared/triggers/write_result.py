"""``write_result``: session-enabled topic trigger on the writer subscription; stores outputs and errors.

It takes the messages of one session in batches (``cardinality="many"``, up to host.json
``maxMessageBatchSize``) and writes them with :func:`shared.write.write_batch` (the results for different input
files at once, each in its message's span from its first step to its last). The Python worker settles a batch
as a whole: with ``autoCompleteMessages`` the host completes every message when the function returns and
abandons every one when it raises (settling single messages of a batch needs the ``ServiceBusMessageActions``
binding, which the v2 Python model does not offer with this binding). So a batch in which any result failed
raises after every other result is written; the broker delivers the batch again, and the results already
written cost one create-only request each to find their output in place. A result that fails every time reaches the
subscription's dead-letter queue after ``MaxDeliveryCount`` deliveries, with the results it was delivered with.
"""

from __future__ import annotations

import logging
import typing

import azure.functions as func

from shared import write
from shared.settings import SERVICE_BUS
from shared.telemetry import pipeline
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)


class WriteBatchFailed(RuntimeError):
    """Some results of the batch could not be written; the host abandons the batch (see the module docstring)."""


@bp.function_name("write_result")
@bp.service_bus_topic_trigger(
    arg_name="msgs",
    connection=SERVICE_BUS,
    topic_name="%RESULT_TOPIC%",
    subscription_name="%WRITER_SUBSCRIPTION%",
    is_sessions_enabled=True,
    cardinality="many",
)
# typing.List, not list[...]: the worker's check of a batch parameter (azure.functions.meta) accepts only the
# typing generics and refuses to load the function otherwise.
def write_result(msgs: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
    svc = services()
    # Each result's steps run in the last stage of the file's trace, continued from the result message.
    spans = [pipeline.MessageSpan("write_result", "write", msg.application_properties) for msg in msgs]
    try:
        outcomes = write.write_batch(
            [msg.get_body() for msg in msgs],
            settings=svc.settings,
            blobs=svc.blobs,
            ledger=svc.ledger,
            clock=svc.clock,
            within=lambda index: spans[index].current(),
        )
        for msg, span, outcome in zip(msgs, spans, outcomes, strict=True):
            if not isinstance(outcome, Exception):
                with span.current():
                    pipeline.set_outcome(outcome)
                    logger.info("write_result %s (session %s): %s", msg.message_id, msg.session_id, outcome)
    finally:
        for span in spans:
            span.end()
    failed = [(msg, outcome) for msg, outcome in zip(msgs, outcomes, strict=True) if isinstance(outcome, Exception)]
    for msg, error in failed:
        logger.error("write_result %s (session %s) failed: %r", msg.message_id, msg.session_id, error,
                     exc_info=error)  # fmt: skip
    if failed:
        names = ", ".join(str(msg.message_id) for msg, _ in failed)
        raise WriteBatchFailed(f"{len(failed)} of {len(msgs)} results not written ({names})") from failed[0][1]
