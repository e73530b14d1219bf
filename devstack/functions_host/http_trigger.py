"""HTTP triggers on a threaded standard-library server: ``http://<host>:<port>/<routePrefix>/<route>``.

Requests become ``func.HttpRequest`` through azure.functions' own converter and the function's return value
goes back through its ``HttpResponse`` converter. ``GET /`` answers 200 (liveness) and
``GET /admin/host/status`` (host key required) reports the host's state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from azure.functions import meta
from azure.functions.http import HttpRequestConverter
from opentelemetry.trace import SpanKind

from .http_routes import HttpRoute, authorized, match_route
from .invoker import Invoker

logger = logging.getLogger(__name__)

_HTTP_REASON = "This function was programmatically called via the host APIs."


class HttpTriggers:
    def __init__(
        self,
        routes: list[HttpRoute],
        invoker: Invoker,
        host: str,
        port: int,
        route_prefix: str,
        host_key: str,
        host_id: str,
    ) -> None:
        self.routes = routes
        self._invoker = invoker
        self._prefix = route_prefix.strip("/")
        self._key = host_key
        self._host_id = host_id
        self._in_flight = 0
        self._idle = threading.Condition()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float) -> None:
        """Stop accepting requests, then wait up to ``grace`` seconds for running ones."""
        if self._thread.is_alive():
            self._server.shutdown()  # blocks forever unless serve_forever is running
        deadline = time.monotonic() + grace
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        triggers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "devstack-functions-host"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("%s %s", self.address_string(), format % args)

            def _dispatch(self) -> None:
                with triggers._idle:
                    triggers._in_flight += 1
                try:
                    triggers._handle(self)
                except ValueError as exc:  # a malformed request (length, chunk size, query)
                    logger.warning("bad request %s %s: %s", self.command, self.path, exc)
                    _send(self, HTTPStatus.BAD_REQUEST, b"", {})
                finally:
                    with triggers._idle:
                        triggers._in_flight -= 1
                        triggers._idle.notify_all()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

        return Handler

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        presented = request.headers.get("x-functions-key") or query.get("code")
        path = url.path.strip("/")
        body = _read_body(request)
        if path == "":
            _send(request, HTTPStatus.OK, b"", {})
            return
        if path.lower() == "admin/host/status":
            if not authorized("admin", presented, self._key):
                _send(request, HTTPStatus.UNAUTHORIZED, b"", {})
                return
            status = {"id": self._host_id, "state": "Running", "functions": [r.spec.name for r in self.routes]}
            _send(request, HTTPStatus.OK, json.dumps(status).encode(), {"Content-Type": "application/json"})
            return
        if self._prefix:
            if not (path.lower() == self._prefix.lower() or path.lower().startswith(self._prefix.lower() + "/")):
                _send(request, HTTPStatus.NOT_FOUND, b"", {})
                return
            path = path[len(self._prefix) :]
        candidates = match_route(self.routes, path)
        method = request.command.upper()
        allowed = [(r, p) for r, p in candidates if r.methods is None or method in r.methods]
        if not allowed:
            _send(request, HTTPStatus.NOT_FOUND, b"", {})
            return
        route, params = allowed[0]
        if not authorized(route.auth_level, presented, self._key):
            _send(request, HTTPStatus.UNAUTHORIZED, b"", {})
            return
        host = request.headers.get("Host") or f"127.0.0.1:{self.port}"
        datum = meta.Datum(
            {
                "method": meta.Datum(method, "string"),
                "url": meta.Datum(f"http://{host}{request.path}", "string"),
                "headers": {k.lower(): meta.Datum(v, "string") for k, v in request.headers.items()},
                "query": {k: meta.Datum(v, "string") for k, v in query.items()},
                "params": {k: meta.Datum(v, "string") for k, v in params.items()},
                "body": meta.Datum(body, "bytes"),
            },
            "http",
        )
        http_request = HttpRequestConverter.decode(datum, trigger_metadata={})
        result = self._invoker.invoke(
            route.spec, http_request, reason=_HTTP_REASON, trace_carrier=dict(request.headers.items()),
            span_kind=SpanKind.SERVER,
        )  # fmt: skip
        if not result.succeeded:
            _send(request, HTTPStatus.INTERNAL_SERVER_ERROR, b"", {})
            return
        output = next((b for b in route.spec.outputs if b["type"] == "http"), None)
        datum_out = result.outputs.get(str(output["name"])) if output else None
        _send_datum(request, datum_out)


def _read_body(request: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in (request.headers.get("Transfer-Encoding") or "").lower():
        parts: list[bytes] = []
        while True:
            size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while request.rfile.readline().strip():
                    pass  # trailers
                return b"".join(parts)
            parts.append(request.rfile.read(size))
            request.rfile.readline()
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length > 0 else b""


def _send_datum(request: BaseHTTPRequestHandler, datum: meta.Datum | None) -> None:
    if datum is None:
        _send(request, HTTPStatus.NO_CONTENT, b"", {})
    elif datum.type == "string":
        _send(request, HTTPStatus.OK, str(datum.value).encode(), {"Content-Type": "text/plain; charset=utf-8"})
    elif datum.type == "http":
        value = datum.value
        status = int(value["status_code"].value)
        headers = {k: str(v.value) for k, v in value["headers"].items()}
        body = value["body"].value
        payload = body.encode() if isinstance(body, str) else bytes(body or b"")
        cookies = value.get("cookies") or []
        _send(request, status, payload, headers, [c.output(header="").strip() for c in cookies])
    else:
        raise TypeError(f"unexpected HTTP output type {datum.type}")


def _send(
    request: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    headers: dict[str, str],
    cookies: list[str] | None = None,
) -> None:
    request.send_response(status)
    for name, value in headers.items():
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            request.send_header(name, value)
    for cookie in cookies or []:
        request.send_header("Set-Cookie", cookie)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)
