"""``request_status``: ``GET /api/requests/{request_id}`` returns a request's ledger state as JSON."""

from __future__ import annotations

import json
import logging
import re

import azure.functions as func

from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def _json(status: int, body: object) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, sort_keys=True), status_code=status, mimetype="application/json")


@bp.function_name("request_status")
@bp.route(route="requests/{request_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def request_status(req: func.HttpRequest) -> func.HttpResponse:
    request_id = req.route_params.get("request_id", "")
    if not _REQUEST_ID.match(request_id):
        return _json(404, {"error": {"code": "not_found", "message": "unknown request id"}})
    record = services().ledger.get(request_id)
    if record is None:
        return _json(404, {"error": {"code": "not_found", "message": f"unknown request id {request_id}"}})
    return _json(200, record.public_view())
