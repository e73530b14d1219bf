"""Just enough of the AMQP 1.0 type system to handle messages as bytes on the hot path.

The emulator keeps each message as its encoded sections (properties, application-properties, body)
and only builds the header and message-annotations per delivery, so a message is never fully decoded
and re-encoded. The small decoder here reads the values filters and the broker need.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES = 0x70, 0x71, 0x72, 0x73, 0x74
DATA, FOOTER = 0x75, 0x78

_FIXED = {0x40: 0, 0x41: 0, 0x42: 0, 0x43: 0, 0x44: 0, 0x45: 0, 0x56: 1, 0x94: 16, 0x98: 16}
for _code in range(0x50, 0x56):
    _FIXED[_code] = 1
for _code in (0x60, 0x61):
    _FIXED[_code] = 2
for _code in range(0x70, 0x75):
    _FIXED[_code] = 4
for _code in range(0x80, 0x85):
    _FIXED[_code] = 8

_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


class CodecError(ValueError):
    """The bytes are not a well-formed AMQP message."""


def skip_value(buf: bytes, pos: int) -> int:
    """Position just after the encoded value that starts at ``pos``."""
    try:
        code = buf[pos]
        pos += 1
        if code == 0x00:
            return skip_value(buf, skip_value(buf, pos))
        size = _FIXED.get(code)
        if size is not None:
            end = pos + size
        elif code & 0xF0 in (0xA0, 0xC0, 0xE0):
            end = pos + 1 + buf[pos]
        elif code & 0xF0 in (0xB0, 0xD0, 0xF0):
            end = pos + 4 + _U32.unpack_from(buf, pos)[0]
        else:
            raise CodecError(f"unknown AMQP type code 0x{code:02x} at {pos - 1}")
    except (IndexError, struct.error) as exc:
        raise CodecError("truncated AMQP value") from exc
    if end > len(buf):
        raise CodecError("truncated AMQP value")
    return end


def iter_sections(buf: bytes) -> Iterator[tuple[int, int, int]]:
    """(section code, start, end) for each section of an encoded message."""
    pos, size = 0, len(buf)
    if size == 0:
        raise CodecError("empty message")
    while pos < size:
        if buf[pos] != 0x00:
            raise CodecError("message section is not a described type")
        if buf[pos + 1 : pos + 2] == b"\x53":
            code = buf[pos + 2] if pos + 2 < size else -1
        elif buf[pos + 1 : pos + 2] == b"\x80":
            code = int.from_bytes(buf[pos + 2 : pos + 10], "big")
        else:
            raise CodecError("unsupported section descriptor")
        if not HEADER <= code <= FOOTER:
            raise CodecError(f"unknown message section 0x{code:x}")
        end = skip_value(buf, pos)
        yield code, pos, end
        pos = end


def _binary_payload(buf: bytes, start: int, end: int) -> bytes:
    """The bytes inside a `data` section (described binary)."""
    pos = start + 3
    code = buf[pos]
    if code == 0xA0:
        return buf[pos + 2 : end]
    if code == 0xB0:
        return buf[pos + 5 : end]
    raise CodecError("data section does not hold binary")


def split_batch(payload: bytes) -> list[bytes] | None:
    """The messages inside a batch envelope, or None when ``payload`` is a single message.

    proton hides the transfer's message-format, so a batch is recognised by its shape: every body
    section is a `data` section that itself parses as a complete AMQP message.
    """
    inner: list[bytes] = []
    for code, start, end in iter_sections(payload):
        if code == DATA:
            chunk = _binary_payload(payload, start, end)
            if len(chunk) < 3 or chunk[0] != 0x00 or chunk[1] != 0x53 or not HEADER <= chunk[2] <= FOOTER:
                return None
            try:
                codes = [c for c, _, _ in iter_sections(chunk)]
            except CodecError:
                return None
            if not any(DATA <= c <= 0x77 for c in codes):
                return None
            inner.append(chunk)
        elif code > APPLICATION_PROPERTIES and code != FOOTER:
            return None
    return inner or None


# ---------------------------------------------------------------- decoding values


def decode_value(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """(python value, next position). Symbols become str, described values their inner value."""
    code = buf[pos]
    pos += 1
    if code == 0x00:
        _, pos = decode_value(buf, pos)
        return decode_value(buf, pos)
    if code == 0x40:
        return None, pos
    if code in (0x41, 0x42):
        return code == 0x41, pos
    if code in (0x43, 0x44):
        return 0, pos
    if code == 0x45:
        return [], pos
    if code == 0x56:
        return buf[pos] == 1, pos + 1
    if code in (0x50, 0x52, 0x53):
        return buf[pos], pos + 1
    if code in (0x51, 0x54, 0x55):
        return struct.unpack_from(">b", buf, pos)[0], pos + 1
    if code == 0x60:
        return struct.unpack_from(">H", buf, pos)[0], pos + 2
    if code == 0x61:
        return struct.unpack_from(">h", buf, pos)[0], pos + 2
    if code == 0x70:
        return _U32.unpack_from(buf, pos)[0], pos + 4
    if code == 0x71:
        return struct.unpack_from(">i", buf, pos)[0], pos + 4
    if code == 0x72:
        return struct.unpack_from(">f", buf, pos)[0], pos + 4
    if code == 0x73:
        return chr(_U32.unpack_from(buf, pos)[0]), pos + 4
    if code == 0x80:
        return struct.unpack_from(">Q", buf, pos)[0], pos + 8
    if code == 0x81:
        return _I64.unpack_from(buf, pos)[0], pos + 8
    if code == 0x82:
        return struct.unpack_from(">d", buf, pos)[0], pos + 8
    if code == 0x83:
        ms = _I64.unpack_from(buf, pos)[0]
        return datetime.fromtimestamp(ms / 1000, UTC), pos + 8
    if code == 0x98:
        return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16
    if code in (0xA0, 0xA1, 0xA3):
        n = buf[pos]
        raw = bytes(buf[pos + 1 : pos + 1 + n])
        return (raw if code == 0xA0 else raw.decode("utf-8")), pos + 1 + n
    if code in (0xB0, 0xB1, 0xB3):
        n = _U32.unpack_from(buf, pos)[0]
        raw = bytes(buf[pos + 4 : pos + 4 + n])
        return (raw if code == 0xB0 else raw.decode("utf-8")), pos + 4 + n
    if code in (0xC0, 0xC1, 0xD0, 0xD1):
        if code < 0xD0:
            count, pos = buf[pos + 1], pos + 2
        else:
            count, pos = _U32.unpack_from(buf, pos + 4)[0], pos + 8
        items = []
        for _ in range(count):
            item, pos = decode_value(buf, pos)
            items.append(item)
        if code in (0xC0, 0xD0):
            return items, pos
        return {items[i]: items[i + 1] for i in range(0, len(items), 2)}, pos
    # Arrays and the rarer types are skipped as opaque: the broker never needs to look inside them.
    end = skip_value(buf, pos - 1)
    return None, end


PROPERTY_FIELDS = (
    "message_id", "user_id", "to", "subject", "reply_to", "correlation_id", "content_type",
    "content_encoding", "absolute_expiry_time", "creation_time", "group_id", "group_sequence", "reply_to_group_id",
)  # fmt: skip


@dataclass(frozen=True)
class ParsedMessage:
    """A message cut into the pieces the broker stores, plus the values it routes on."""

    ttl: int | None
    priority: int | None
    durable: bool
    ann_pairs: bytes
    ann_count: int
    annotations: Mapping[Any, Any]
    props: bytes
    app: bytes
    tail: bytes
    properties: Mapping[str, Any]
    application: Mapping[Any, Any]


def parse_message(buf: bytes) -> ParsedMessage:
    ttl: int | None = None
    priority: int | None = None
    durable = False
    ann_pairs, ann_count = b"", 0
    annotations: dict[Any, Any] = {}
    props = app = b""
    tail_start = None
    properties: dict[str, Any] = {}
    application: dict[Any, Any] = {}
    for code, start, end in iter_sections(buf):
        if code == HEADER:
            fields, _ = decode_value(buf, start)
            fields = list(fields or []) + [None] * 5
            durable, priority, ttl = bool(fields[0]), fields[1], fields[2]
        elif code == MESSAGE_ANNOTATIONS:
            ann_pairs, ann_count = _map_content(buf, start + 3, end)
            annotations, _ = decode_value(buf, start)
        elif code == PROPERTIES:
            props = buf[start:end]
            values, _ = decode_value(buf, start)
            properties = dict(zip(PROPERTY_FIELDS, values or [], strict=False))
        elif code == APPLICATION_PROPERTIES:
            app = buf[start:end]
            application, _ = decode_value(buf, start)
            if not isinstance(application, dict):
                raise CodecError("application-properties is not a map")
        elif code >= DATA and tail_start is None:
            tail_start = start
    if tail_start is None:
        raise CodecError("message has no body")
    return ParsedMessage(
        ttl, priority, durable, ann_pairs, ann_count, annotations or {}, props, app, buf[tail_start:],
        properties, application,
    )  # fmt: skip


def _map_content(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The raw key/value bytes of an encoded map, and how many elements (keys + values) it has."""
    code = buf[pos]
    if code == 0xC1:
        return bytes(buf[pos + 3 : end]), buf[pos + 2]
    if code == 0xD1:
        return bytes(buf[pos + 9 : end]), _U32.unpack_from(buf, pos + 5)[0]
    if code == 0x40:
        return b"", 0
    raise CodecError("message-annotations is not a map")


# ---------------------------------------------------------------- encoding


def enc_symbol(name: str) -> bytes:
    raw = name.encode()
    return b"\xa3" + bytes([len(raw)]) + raw


def enc_value(value: Any) -> bytes:
    if value is None:
        return b"\x40"
    if isinstance(value, bool):
        return b"\x41" if value else b"\x42"
    if isinstance(value, int):
        return b"\x81" + _I64.pack(value)
    if isinstance(value, float):
        return b"\x82" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode()
        return (b"\xa1" + bytes([len(raw)]) if len(raw) < 256 else b"\xb1" + _U32.pack(len(raw))) + raw
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return (b"\xa0" + bytes([len(raw)]) if len(raw) < 256 else b"\xb0" + _U32.pack(len(raw))) + raw
    if isinstance(value, datetime):
        return b"\x83" + _I64.pack(int(value.timestamp() * 1000))
    if isinstance(value, uuid.UUID):
        return b"\x98" + value.bytes
    raise CodecError(f"cannot encode {type(value).__name__}")


def enc_timestamp(ms: int) -> bytes:
    return b"\x83" + _I64.pack(ms)


def enc_long(value: int) -> bytes:
    return b"\x81" + _I64.pack(value)


def enc_map32(pairs: bytes, count: int) -> bytes:
    return b"\xd1" + _U32.pack(len(pairs) + 4) + _U32.pack(count) + pairs


def header_section(ttl: int | None, priority: int | None, durable: bool, delivery_count: int) -> bytes:
    """The header with an explicit delivery-count (proton's encoder would drop a zero)."""
    body = (
        (b"\x41" if durable else b"\x42")
        + (b"\x50" + bytes([priority]) if priority is not None else b"\x40")
        + (b"\x70" + _U32.pack(ttl) if ttl is not None else b"\x40")
        + b"\x42"
        + b"\x70"
        + _U32.pack(delivery_count)
    )
    return b"\x00\x53\x70\xc0" + bytes([len(body) + 1, 5]) + body


def annotations_section(pairs: bytes, count: int) -> bytes:
    return b"\x00\x53\x72" + enc_map32(pairs, count)


def application_section(values: Mapping[str, Any]) -> bytes:
    pairs = b"".join(enc_value(k) + enc_value(v) for k, v in values.items())
    return b"\x00\x53\x74" + enc_map32(pairs, 2 * len(values))
