"""``score_request`` functions: one Service Bus topic trigger per model route, registered in a loop.

The routes come from the declaration (``models.json``, see :mod:`shared.routes`), read when this module is
imported: the worker indexes functions at import time. The default route is the function ``score_request``;
every other route adds ``score_request_<model>`` on its own subscription. The routes differ only in
configuration (subscription and endpoint settings), never in code.

Each function takes its messages in batches (``cardinality="many"``, up to host.json's
``extensions.serviceBus.maxMessageBatchSize``), so small files can reach the endpoint several to a request
(see :mod:`shared.score`). The host completes the whole batch when the function returns and abandons it
when it raises, so the use case records every file's own outcome instead of raising for one of them.
"""

from __future__ import annotations

import logging
import typing
from collections import Counter
from collections.abc import Callable

import azure.functions as func

from shared import score
from shared.contracts import DEFAULT_MODEL
from shared.messages import PROP_SCORING_RETRY
from shared.routes import setting_suffix
from shared.settings import SERVICE_BUS, declared_routes
from shared.telemetry import pipeline, propagation
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
        traceparent=propagation.traceparent_of(props),
    )


def handle(messages: list[func.ServiceBusMessage], model: str) -> None:
    # The span continues the first message's trace and links the others'; each request's trace goes on at the
    # endpoint, whose job span is under the POST that carried it.
    properties = [m.application_properties for m in messages]
    with pipeline.message_span("score_request", "score_request", properties[0] if properties else None, properties[1:]):
        svc = services()
        route = svc.settings.route(model)
        if route is None:
            raise RuntimeError(f"no route configured for model {model!r}")
        outcomes = score.score_batch(
            [delivery_of(msg) for msg in messages],
            route=route,
            settings=svc.settings,
            blobs=svc.blobs,
            bus=svc.bus,
            endpoint=svc.endpoint_for(model),
            ledger=svc.ledger,
            now=svc.clock.now(),
        )
        counts = Counter(outcomes)
        pipeline.set_outcome(",".join(f"{o}={n}" for o, n in sorted(counts.items())) if len(messages) > 1
                             else str(outcomes[0]))  # fmt: skip
        for _ in range(counts[score.ScoreOutcome.RESCHEDULED]):
            pipeline.endpoint_retried(model)
        logger.info("score_request (model %s): %d messages: %s", model, len(messages), dict(counts))


def _register(model: str, function_name: str, subscription: str) -> Callable[[list[func.ServiceBusMessage]], None]:
    # typing.List, not list: azure.functions' converter accepts only a typing generic for a batch (the worker
    # refuses to load the function otherwise).
    def score_request(msgs: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
        handle(msgs, model)

    score_request.__name__ = function_name
    bp.function_name(function_name)(
        bp.service_bus_topic_trigger(
            arg_name="msgs",
            connection=SERVICE_BUS,
            topic_name="%REQUEST_TOPIC%",
            subscription_name=subscription,
            cardinality=func.Cardinality.MANY,
        )(score_request)
    )
    return score_request


def function_name_for(model: str) -> str:
    return "score_request" if model == DEFAULT_MODEL else f"score_request_{setting_suffix(model).lower()}"


ROUTED = {r.model: _register(r.model, function_name_for(r.model), r.subscription) for r in declared_routes()}
