"""A WSGI app for test_request_body: reads the body with scoring.service.body and describes what it got."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request

from scoring.service.body import length_reader, request_body


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    request = Request(environ)
    fast = length_reader(request) is not None
    data = request_body(request)
    described = {
        "fast": fast,
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "left_in_stream": len(request.stream.read()),
    }
    body = json.dumps(described).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
