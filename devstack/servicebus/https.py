"""HTTPS on the emulator's AMQP port: the management REST API for `ServiceBusAdministrationClient`.

`IoLoop` hands over every connection whose first byte is not the `A` of an AMQP header. Each one is
served on its own thread: TLS (a ClientHello starts with 0x16) with the local CA's certificate, or plain
HTTP otherwise, HTTP/1.1 with keep-alive. Requests are authorised like CBS tokens (`Authorization:
SharedAccessSignature ...` signed with the emulator's key, for the namespace or the entity) and then run
on the broker's thread through `IoLoop.call`, so the broker stays single-threaded.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from devstack.servicebus import atom, auth
from devstack.servicebus.admin import Admin, Request, Response
from devstack.servicebus.ioloop import IoLoop

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 120.0
MAX_BODY = 1024 * 1024


class AdminServer:
    """Serves handed-over connections (see the module docstring)."""

    def __init__(self, loop: IoLoop, admin: Admin, context: ssl.SSLContext, key_name: str, key: str) -> None:
        self.loop = loop
        self.admin = admin
        self.context = context
        self.key_name = key_name
        self.key = key

    def serve(self, sock: socket.socket) -> None:
        threading.Thread(target=self._connection, args=(sock,), name="servicebus-https", daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        conn: socket.socket = sock
        try:
            conn.settimeout(IDLE_TIMEOUT_S)
            peer = conn.getpeername()
            if conn.recv(1, socket.MSG_PEEK) == b"\x16":
                conn = self.context.wrap_socket(conn, server_side=True)
            _Handler(conn, peer, self)  # type: ignore[arg-type]  # it only keeps the server object
        except (OSError, ssl.SSLError) as exc:
            logger.debug("management connection ended: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def authorize(self, header: str | None, path: str) -> str | None:
        """None when the token allows ``path``, else why not."""
        if not header:
            return "The request has no Authorization header."
        try:
            grant = auth.verify(header, self.key_name, self.key)
        except auth.AuthError as exc:
            return f"The token was refused: {exc}."
        entity = path.strip("/").lower()
        if grant.path and entity != grant.path and not entity.startswith(grant.path + "/"):
            return f"The token is for '{grant.path}', not '{entity}'."
        return None

    def run(self, request: Request) -> Response:
        return self.loop.call(lambda: self.admin.handle(request))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any  # an AdminServer (BaseHTTPRequestHandler only passes it through)

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner: AdminServer = self.server
        url = urlsplit(self.path)
        path = unquote(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(Response(413, atom.error(413, "The request body is too large.")))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        refused = owner.authorize(self.headers.get("Authorization"), path)
        if refused is not None:
            self._send(Response(401, atom.error(401, refused)))
            return
        host = self.headers.get("Host") or "localhost"
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        request = Request(
            method=self.command,
            path=path.lstrip("/"),
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            if_match=self.headers.get("If-Match"),
            body=body,
            base=f"{scheme}://{host}",
        )
        try:
            response = owner.run(request)
        except Exception:
            logger.exception("management request %s %s failed", self.command, path)
            response = Response(500, atom.error(500, "The emulator failed to handle the request."))
        self._send(response)

    def _send(self, response: Response) -> None:
        data = response.body.encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("management %s", format % args)
