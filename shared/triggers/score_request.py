"""``score_request`` functions: one Service Bus topic trigger per model route, registered in a loop.

The routes come from the declaration (``models.json``, see :mod:`shared.routes`), read when this module is
imported: the worker indexes functions at import time. The default route is the function ``score_request``;
every other route adds ``score_request_<model>`` on its own subscription. The routes differ only in
configuration (subscription and endpoint settings), never in code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import azure.functions as func

from shared import score
from shared.contracts import DEFAULT_MODEL
from shared.messages import PROP_SCORING_RETRY
from shared.routes import setting_suffix
from shared.settings import SERVICE_BUS, declared_routes
from shared.telemetry import pipeline
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)


def delivery_of(msg: func.ServiceBusMessage) -> score.Delivery:
    props = msg.application_properties or {}
    try:
        retry = int(props.get(PROP_SCORING_RETRY, 0))
    except (TypeError, ValueError):
        retry = 0
    return score.Delivery(
        body=msg.get_body(),
        message_id=msg.message_id or "",
        delivery_count=msg.delivery_count or 0,
        scoring_retry=retry,
    )


def handle(msg: func.ServiceBusMessage, model: str) -> None:
    with pipeline.message_span("score_request", "score_request", msg.application_properties):
        svc = services()
        route = svc.settings.route(model)
        if route is None:
            raise RuntimeError(f"no route configured for model {model!r}")
        outcome = score.score_request(
            delivery_of(msg),
            route=route,
            settings=svc.settings,
            blobs=svc.blobs,
            bus=svc.bus,
            endpoint=svc.endpoint_for(model),
            ledger=svc.ledger,
            now=svc.clock.now(),
        )
        pipeline.set_outcome(outcome)
        if outcome == score.ScoreOutcome.RESCHEDULED:
            pipeline.endpoint_retried(model)
        logger.info("score_request %s (model %s): %s", msg.message_id, model, outcome)


def _register(model: str, function_name: str, subscription: str) -> Callable[[func.ServiceBusMessage], None]:
    def score_request(msg: func.ServiceBusMessage) -> None:
        handle(msg, model)

    score_request.__name__ = function_name
    bp.function_name(function_name)(
        bp.service_bus_topic_trigger(
            arg_name="msg",
            connection=SERVICE_BUS,
            topic_name="%REQUEST_TOPIC%",
            subscription_name=subscription,
        )(score_request)
    )
    return score_request


def function_name_for(model: str) -> str:
    return "score_request" if model == DEFAULT_MODEL else f"score_request_{setting_suffix(model).lower()}"


ROUTED = {r.model: _register(r.model, function_name_for(r.model), r.subscription) for r in declared_routes()}
