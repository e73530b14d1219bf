"""``write_result``: session-enabled topic trigger on the writer subscription; stores outputs and errors."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import write
from shared.settings import SERVICE_BUS
from shared.telemetry import pipeline
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)


@bp.function_name("write_result")
@bp.service_bus_topic_trigger(
    arg_name="msg",
    connection=SERVICE_BUS,
    topic_name="%RESULT_TOPIC%",
    subscription_name="%WRITER_SUBSCRIPTION%",
    is_sessions_enabled=True,
)
def write_result(msg: func.ServiceBusMessage) -> None:
    # The last stage of the file's trace, continued from the result message.
    with pipeline.message_span("write_result", "write", msg.application_properties):
        svc = services()
        outcome = write.write_result(
            msg.get_body(), settings=svc.settings, blobs=svc.blobs, ledger=svc.ledger, now=svc.clock.now()
        )
        pipeline.set_outcome(outcome)
        logger.info("write_result %s (session %s): %s", msg.message_id, msg.session_id, outcome)
