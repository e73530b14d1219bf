"""``status``: ``GET /api/status``, the pipeline's status page (HTML; JSON with ``?format=json`` or
``Accept: application/json``), and ``GET /api/status/errors/{request_id}``, one file's error record.

Function-key auth, so the page works the same in Azure and on the local host; its links carry the key given
as ``?code=``. With telemetry on, the Service Bus depths are also exported as metrics from this process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from functools import cache
from urllib.parse import quote

import azure.functions as func

from shared.config import SettingsError
from shared.ports import BlobNotFound
from shared.settings import Settings, get_settings
from shared.status import collect
from shared.status_page import render
from shared.status_sources import HttpHealthProbe, ServiceBusDepths
from shared.telemetry import metrics
from shared.telemetry.metrics import SubscriptionDepth
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def depth_reader(settings: Settings) -> ServiceBusDepths:
    return ServiceBusDepths(settings.service_bus, (settings.request_topic, settings.result_topic))


def _wants_json(req: func.HttpRequest) -> bool:
    return req.params.get("format") == "json" or "application/json" in (req.headers.get("accept") or "")


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    svc = services()
    with contextlib.closing(depth_reader(svc.settings)) as depths:
        snapshot = collect(
            blobs=svc.blobs,
            ledger=svc.ledger,
            ledger_container=svc.settings.ledger_container,
            depths=depths,
            probe=HttpHealthProbe(),
            models=svc.settings.models,
            writer_subscription=svc.settings.writer_subscription,
            now=svc.clock.now(),
        )
    if _wants_json(req):
        body = json.dumps(snapshot.to_dict(), sort_keys=True)
        return func.HttpResponse(body, status_code=200, mimetype="application/json")
    key = req.params.get("code")
    page = render(snapshot, f"?code={quote(key)}" if key else "")
    return func.HttpResponse(page, status_code=200, mimetype="text/html", charset="utf-8")


@bp.function_name("status_error_record")
@bp.route(route="status/errors/{request_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status_error_record(req: func.HttpRequest) -> func.HttpResponse:
    request_id = req.route_params.get("request_id", "")
    not_found = func.HttpResponse(
        json.dumps({"error": {"code": "not_found", "message": "no error record for this request id"}}),
        status_code=404,
        mimetype="application/json",
    )
    if not _REQUEST_ID.match(request_id):
        return not_found
    svc = services()
    record = svc.ledger.get(request_id)
    if record is None or not record.error_location or "/" not in record.error_location:
        return not_found
    container, name = record.error_location.split("/", 1)
    try:
        data, _etag = svc.blobs.read(container, name)
    except BlobNotFound:
        return not_found
    return func.HttpResponse(data, status_code=200, mimetype="application/json")


@cache
def _metric_depths() -> ServiceBusDepths:
    """One reader for the metric export, which keeps its client between exports (see ServiceBusDepths)."""
    return depth_reader(get_settings())


def _depths_for_metrics() -> list[SubscriptionDepth]:
    try:
        reader = _metric_depths()
    except SettingsError as exc:
        logger.warning("no Service Bus depth metrics: %s", exc)
        return []
    return reader.depths()


# Read at each metric export once a meter provider is configured; never called while telemetry is off.
metrics.observe_subscription_depths(_depths_for_metrics)
