"""The emulator's byte-level message codec and SAS token check (no server involved)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote_plus

import pytest
from proton import Message

from devstack.servicebus import auth, codec


def encoded(body: bytes, **fields: object) -> bytes:
    return bytes(Message(body=body, **fields).encode())


def test_parse_message_keeps_sections_and_reads_routing_fields() -> None:
    raw = encoded(b"payload", id="m-1", group_id="s-1", properties={"color": "red", "n": 3}, ttl=5.0)
    parsed = codec.parse_message(raw)
    assert parsed.properties["message_id"] == "m-1"
    assert parsed.properties["group_id"] == "s-1"
    assert parsed.application == {"color": "red", "n": 3}
    assert parsed.ttl == 5000
    rebuilt = codec.header_section(parsed.ttl, None, False, 2) + parsed.props + parsed.app + parsed.tail
    back = Message()
    back.decode(rebuilt)
    assert bytes(back.body) == b"payload"
    assert back.delivery_count == 2
    assert back.id == "m-1"


def test_split_batch_finds_embedded_messages_only() -> None:
    inner = [encoded(f"m{i}".encode()) for i in range(3)]
    whole = bytes(Message(id="first").encode())
    envelope = b"".join(whole[a:b] for code, a, b in codec.iter_sections(whole) if code == codec.PROPERTIES)
    batch = envelope + b"".join(b"\x00\x53\x75\xa0" + bytes([len(m)]) + m for m in inner)
    assert codec.split_batch(batch) == inner
    assert codec.split_batch(encoded(b"plain data")) is None


def test_truncated_or_garbage_input_raises_codec_error() -> None:
    raw = encoded(b"payload", id="m-1")
    with pytest.raises(codec.CodecError):
        codec.parse_message(raw[:-2])
    with pytest.raises(codec.CodecError):
        codec.parse_message(b"\x13\x37garbage")


def test_application_section_round_trips_types() -> None:
    values = {"s": "text", "i": -5, "f": 1.5, "b": True, "raw": b"\x00", "none": None}
    section = codec.application_section(values)
    assert codec.decode_value(section)[0] == values


def token(audience: str, expiry: int, key: str, name: str = "Root") -> str:
    sig = base64.b64encode(
        hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), hashlib.sha256).digest()
    )
    return f"SharedAccessSignature sr={quote_plus(audience)}&sig={quote_plus(sig.decode())}&se={expiry}&skn={name}"


def test_sas_tokens_are_checked_for_key_name_and_expiry() -> None:
    later = int(time.time()) + 60
    grant = auth.verify(token("sb://127.0.0.1:5673/T1/Subscriptions/S1", later, "k"), "Root", "k")
    assert grant.path == "t1/subscriptions/s1"
    with pytest.raises(auth.AuthError, match="signature"):
        auth.verify(token("sb://h/q", later, "other"), "Root", "k")
    with pytest.raises(auth.AuthError, match="expired"):
        auth.verify(token("sb://h/q", int(time.time()) - 1, "k"), "Root", "k")
    with pytest.raises(auth.AuthError, match="key name"):
        auth.verify(token("sb://h/q", later, "k", name="Other"), "Root", "k")
    with pytest.raises(auth.AuthError):
        auth.verify("Bearer abc", "Root", "k")
