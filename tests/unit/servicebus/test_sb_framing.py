"""`InboundFrames`: transfer frames get the delivery-ids proton expects; everything else passes untouched."""

from __future__ import annotations

import struct

from devstack.servicebus.framing import InboundFrames

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"


def _uint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return bytes((0x52, value))
    return b"\x70" + struct.pack(">I", value)


def _frame(performative: int, fields: bytes, count: int, channel: int = 1, payload: bytes = b"") -> bytes:
    body = b"\x00\x53" + bytes((performative, 0xC0, len(fields) + 1, count)) + fields + payload
    return struct.pack(">IBBH", 8 + len(body), 2, 0, channel) + body


def begin(next_outgoing_id: int, channel: int = 1) -> bytes:
    fields = b"\x40" + _uint(next_outgoing_id) + b"\x70\x00\x01\x00\x00" + b"\x70\x00\x01\x00\x00"
    return _frame(0x11, fields, 4, channel)


def transfer(delivery_id: int, *, handle: int = 0, more: bool = False, payload: bytes = b"x") -> bytes:
    fields = _uint(handle) + _uint(delivery_id) + b"\xa0\x04tag1" + b"\x43" + b"\x42" + (b"\x41" if more else b"\x42")
    return _frame(0x14, fields, 6, payload=payload)


def flow() -> bytes:
    return _frame(0x13, b"\x43\x70\x00\x00\x10\x00\x43\x70\x00\x00\x10\x00", 4)


def delivery_ids(data: bytes) -> list[int]:
    """The delivery-id of each transfer frame in ``data`` (after the protocol header)."""
    ids, pos = [], len(AMQP_HEADER)
    while pos < len(data):
        size = struct.unpack_from(">I", data, pos)[0]
        frame = data[pos : pos + size]
        if frame[10] == 0x14:
            value = frame[15:]
            ids.append(0 if value[0] == 0x43 else value[1] if value[0] == 0x52 else struct.unpack(">I", value[1:5])[0])
        pos += size
    return ids


def test_frames_in_order_pass_through_unchanged() -> None:
    stream = AMQP_HEADER + begin(0) + transfer(0) + flow() + transfer(1) + transfer(2)
    frames = InboundFrames()
    assert frames.feed(stream) == stream
    assert frames.renumbered == 0


def test_duplicate_and_out_of_order_ids_are_renumbered() -> None:
    frames = InboundFrames()
    out = frames.feed(AMQP_HEADER + begin(0) + transfer(0) + transfer(2) + transfer(1) + transfer(1))
    assert delivery_ids(out) == [0, 1, 2, 3]
    assert frames.renumbered == 3


def test_renumbering_across_encodings_keeps_sizes_consistent() -> None:
    frames = InboundFrames()
    out = frames.feed(AMQP_HEADER + begin(255) + transfer(255) + transfer(255) + transfer(300, payload=b"body"))
    assert delivery_ids(out) == [255, 256, 257]
    assert out.endswith(b"body")


def test_continuation_frames_keep_the_id_of_their_delivery() -> None:
    frames = InboundFrames()
    stream = AMQP_HEADER + begin(5) + transfer(9, more=True) + transfer(9, more=True) + transfer(9) + transfer(9)
    assert delivery_ids(frames.feed(stream)) == [5, 5, 5, 6]


def test_partial_frames_wait_for_the_rest() -> None:
    frames = InboundFrames()
    stream = SASL_HEADER + AMQP_HEADER + begin(0) + transfer(3)
    first = frames.feed(stream[:30])
    rest = frames.feed(stream[30:])
    assert (first + rest).startswith(SASL_HEADER)
    assert delivery_ids((first + rest)[len(SASL_HEADER) :]) == [0]


def test_unreadable_framing_is_left_to_proton() -> None:
    frames = InboundFrames()
    garbage = AMQP_HEADER + b"\x00\x00\x00\x01\x00\x00\x00\x00junk"
    assert frames.feed(garbage) == garbage
    assert frames.feed(transfer(7)) == transfer(7)


def end(channel: int = 1) -> bytes:
    return _frame(0x17, b"\x40", 1, channel)


def test_frames_for_an_ended_session_are_dropped_until_it_is_begun_again() -> None:
    frames = InboundFrames()
    stream = AMQP_HEADER + begin(0) + transfer(0) + end() + flow() + transfer(1) + begin(7) + transfer(7)
    out = frames.feed(stream)
    assert out == AMQP_HEADER + begin(0) + transfer(0) + end() + begin(7) + transfer(7)
    assert frames.dropped == 2
