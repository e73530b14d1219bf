"""Shared-access-signature checks for CBS put-token requests.

A token reads `SharedAccessSignature sr=<url-encoded audience>&sig=<signature>&se=<unix expiry>&skn=<key name>`;
the signature is HMAC-SHA256 over `quote_plus(audience) + "\\n" + expiry`, keyed with the key string's
UTF-8 bytes (that is what the SDK does, not a base64 decode of the key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, quote_plus, urlsplit

PREFIX = "SharedAccessSignature "


class AuthError(Exception):
    """The token is malformed, signed with another key, or expired."""


@dataclass(frozen=True)
class Grant:
    path: str  # entity path the token is for ("" = the whole namespace), lower case
    expires: float


def verify(token: str, key_name: str, key: str, now: float | None = None) -> Grant:
    if not token.startswith(PREFIX):
        raise AuthError("not a SharedAccessSignature token")
    fields = {k: v[0] for k, v in parse_qs(token[len(PREFIX) :], keep_blank_values=True).items()}
    try:
        audience, signature, expiry, name = fields["sr"], fields["sig"], fields["se"], fields["skn"]
    except KeyError as exc:
        raise AuthError(f"token lacks field {exc.args[0]}") from exc
    if name != key_name:
        raise AuthError(f"unknown key name {name!r}")
    expected = hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
    try:
        given = base64.b64decode(signature, validate=True)
    except ValueError as exc:
        raise AuthError("signature is not base64") from exc
    if not hmac.compare_digest(expected, given):
        raise AuthError("signature does not match the configured key")
    try:
        expires = float(expiry)
    except ValueError as exc:
        raise AuthError("expiry is not a number") from exc
    if expires <= (time.time() if now is None else now):
        raise AuthError("token expired")
    return Grant(path=entity_path(audience), expires=expires)


def entity_path(address: str) -> str:
    """`amqps://host:port/q1`, `sb://host/t1/Subscriptions/s1` or `q1` -> `q1`, `t1/subscriptions/s1`."""
    if "://" in address:
        address = urlsplit(address).path
    return address.strip("/").lower()
