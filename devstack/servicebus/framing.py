"""Gives a client's transfer frames the delivery-ids proton expects, before proton sees them.

The SDK's `AutoLockRenewer` renews from a thread pool, and its threads share one connection. The SDK's
session takes `next_outgoing_id` for a transfer and only increments it after writing the frame, without
a lock, so two threads can send the same delivery-id, or send 5 before 4. Azure Service Bus accepts
that; proton's engine ends the connection ("sequencing error, expected delivery-id 4, got 5") and every
renewal on it fails, so the SDK stops renewing and the locks expire.

`InboundFrames` sits between the socket and `Transport.push`: it splits the byte stream into frames,
tracks the next delivery-id proton expects per session channel (from `begin`, then one per delivery),
and rewrites the delivery-id of a transfer that does not carry it (continuation frames of a
multi-frame transfer keep the id of their first frame). The same threads can also write a frame for a
session after the client has ended it (a renewal racing the receiver's close); proton ends the whole
connection for that ("no such channel"), so such frames are dropped until the channel is begun again.
Frames in order pass through untouched. The
broker's settlement of a renumbered transfer names the new id; the SDK completes `$management`
requests by their correlated response, not by that settlement, so renewals are unaffected.
"""

from __future__ import annotations

import struct

from devstack.servicebus.codec import CodecError, skip_value

AMQP_FRAME = 0x00
BEGIN, TRANSFER, END = 0x11, 0x14, 0x17
_HEADER = struct.Struct(">IBBH")
_U32 = struct.Struct(">I")


class FrameError(ValueError):
    """The bytes are not AMQP framing we can read (left for proton to judge)."""


def _uint(buf: bytes, pos: int) -> tuple[int | None, int]:
    """A uint (or null) at ``pos``: (value, position after it)."""
    code = buf[pos]
    if code == 0x40:
        return None, pos + 1
    if code == 0x43:
        return 0, pos + 1
    if code == 0x52:
        return buf[pos + 1], pos + 2
    if code == 0x70:
        return _U32.unpack_from(buf, pos + 1)[0], pos + 5
    raise FrameError(f"unexpected type 0x{code:02x} for a uint field")


def _enc_uint(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return bytes((0x52, value))
    return b"\x70" + _U32.pack(value)


class InboundFrames:
    """Renumbers out-of-sequence transfer frames of one connection (see the module docstring)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._amqp = False  # past the AMQP (not SASL) protocol header
        self._broken = False  # framing we could not read: pass everything through from here on
        self._next_id: dict[int, int] = {}  # channel -> next delivery-id proton expects
        self._continuing: dict[tuple[int, int], int] = {}  # (channel, handle) -> id of an unfinished delivery
        self._ended: set[int] = set()  # channels the client has ended and not begun again
        self.dropped = 0
        self.renumbered = 0

    def feed(self, data: bytes) -> bytes:
        """Bytes to hand to proton now (whole frames, renumbered where needed)."""
        if self._broken:
            return data
        if self._buf:
            self._buf += data
            buf = bytes(self._buf)
        else:
            buf = data
        parts: list[bytes] = []
        start = pos = 0  # bytes [start, pos) pass through unchanged
        try:
            while len(buf) - pos >= 8:
                if buf[pos : pos + 4] == b"AMQP":
                    self._amqp = buf[pos + 4] == 0
                    pos += 8
                    continue
                size, doff, ftype, channel = _HEADER.unpack_from(buf, pos)
                if size < 8 or doff < 2:
                    raise FrameError("bad frame header")
                if len(buf) - pos < size:
                    break
                if self._amqp and ftype == AMQP_FRAME:
                    replacement = self._frame(buf, pos, pos + size, pos + doff * 4, channel)
                    if replacement is not None:
                        parts += (buf[start:pos], replacement)
                        start = pos + size
                pos += size
        except (FrameError, CodecError, IndexError, struct.error):
            # Not something we understand: stop interpreting and let proton judge the raw bytes.
            pos = len(buf)
            self._broken = True
        parts.append(buf[start:pos])
        self._buf = bytearray(buf[pos:])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _frame(self, buf: bytes, begin: int, end: int, body: int, channel: int) -> bytes | None:
        """The frame at buf[begin:end] as it must reach proton: None when unchanged, b"" to drop it."""
        if end < body + 4 or buf[body] != 0x00 or buf[body + 1] != 0x53:
            return None  # an empty (heartbeat) frame, or a descriptor we do not track
        code, kind = buf[body + 2], buf[body + 3]
        if channel in self._ended:
            if code != BEGIN:
                self.dropped += 1
                return b""
            self._ended.discard(channel)
        if code not in (BEGIN, END, TRANSFER):
            return None
        if code == END:
            self._ended.add(channel)
            self._next_id.pop(channel, None)
            self._continuing = {k: v for k, v in self._continuing.items() if k[0] != channel}
            return None
        if kind == 0xC0:
            size_at, first, count = body + 4, body + 6, buf[body + 5]
        elif kind == 0xD0:
            size_at, first, count = body + 4, body + 12, _U32.unpack_from(buf, body + 8)[0]
        else:
            return None  # list0: no fields
        if code == BEGIN:
            pos = first + 3 if buf[first] == 0x60 else _uint(buf, first)[1]  # remote-channel (ushort)
            next_id, _ = _uint(buf, pos)
            if next_id is not None:
                self._next_id[channel] = next_id
            return None
        if count < 2:
            return None
        handle, id_at = _uint(buf, first)
        key = (channel, handle or 0)
        delivery_id, id_end = _uint(buf, id_at)
        more = False
        if count >= 6:
            pos = skip_value(buf, skip_value(buf, skip_value(buf, id_end)))  # delivery-tag, format, settled
            more = buf[pos] == 0x41 or buf[pos : pos + 2] == b"\x56\x01"
        wanted = self._continuing.get(key)
        if wanted is None:
            expected = self._next_id.get(channel)
            wanted = delivery_id if expected is None else expected
            if wanted is not None:
                self._next_id[channel] = (wanted + 1) & 0xFFFFFFFF
        if more and wanted is not None:
            self._continuing[key] = wanted
        else:
            self._continuing.pop(key, None)
        if delivery_id is None or wanted is None or delivery_id == wanted:
            return None
        self.renumbered += 1
        frame = buf[begin:end]
        return _splice(frame, body - begin, size_at - begin, kind, id_at - begin, id_end - begin, _enc_uint(wanted))


def _splice(frame: bytes, body: int, size_at: int, kind: int, start: int, end: int, field: bytes) -> bytes:
    """The frame with bytes [start, end) replaced by ``field``, list and frame sizes adjusted."""
    delta = len(field) - (end - start)
    out = bytearray(frame[:start] + field + frame[end:])
    if kind == 0xC0:
        list_size = out[size_at] + delta
        if not 0 <= list_size <= 255:
            raise FrameError("transfer fields too long to renumber")
        out[size_at] = list_size
    else:
        _U32.pack_into(out, size_at, _U32.unpack_from(out, size_at)[0] + delta)
    _U32.pack_into(out, 0, len(out))
    return bytes(out)
