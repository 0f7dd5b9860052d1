"""MongoDB wire protocol, just enough for read-only commands: OP_MSG (opcode 2013) with a minimal BSON codec.

`hello` and `buildInfo` answer without authentication on every server; `listDatabases` (names only)
answers only when access control is off, which is what the exposure check wants to know.
"""

from __future__ import annotations

import struct
from typing import Any

from sentinel.collectors.protocols import ProtocolError

OP_MSG = 2013
HEADER = struct.Struct("<iiii")
MAX_MESSAGE = 1_048_576
_MAX_DEPTH = 8


def _cstring(text: str) -> bytes:
    data = text.encode()
    if b"\x00" in data:
        raise ValueError("BSON keys cannot contain NUL")
    return data + b"\x00"


def encode_document(doc: dict[str, int | str]) -> bytes:
    """BSON for a flat command document of int32 and string values."""
    body = bytearray()
    for key, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"unsupported BSON value for {key!r}")
        if isinstance(value, int):
            body += b"\x10" + _cstring(key) + struct.pack("<i", value)
        else:
            data = value.encode()
            body += b"\x02" + _cstring(key) + struct.pack("<i", len(data) + 1) + data + b"\x00"
    return struct.pack("<i", len(body) + 5) + bytes(body) + b"\x00"


def decode_document(data: bytes, depth: int = 0) -> dict[str, Any]:
    """Decode one BSON document (the common types); raises ProtocolError on anything malformed."""
    if depth > _MAX_DEPTH:
        raise ProtocolError("BSON nested too deeply")
    if len(data) < 5:
        raise ProtocolError("BSON document too short")
    (length,) = struct.unpack_from("<i", data)
    if length < 5 or length > len(data) or data[length - 1] != 0:
        raise ProtocolError("BSON document length is inconsistent")
    out: dict[str, Any] = {}
    pos, end = 4, length - 1
    try:
        while pos < end:
            kind = data[pos]
            key_end = data.index(b"\x00", pos + 1, end)
            key = data[pos + 1 : key_end].decode("utf-8", "replace")
            pos = key_end + 1
            value, pos = _decode_value(kind, data, pos, end, depth)
            if pos > end:
                raise ProtocolError("BSON value runs past the document")
            out[key] = value
    except (struct.error, ValueError, IndexError) as exc:
        raise ProtocolError(f"malformed BSON: {exc}") from None
    return out


def _decode_value(kind: int, data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    fixed = {0x01: ("<d", 8), 0x09: ("<q", 8), 0x10: ("<i", 4), 0x11: ("<Q", 8), 0x12: ("<q", 8)}
    if kind in fixed:
        fmt, size = fixed[kind]
        if pos + size > end:
            raise ProtocolError("BSON value runs past the document")
        return struct.unpack_from(fmt, data, pos)[0], pos + size
    if kind == 0x02:
        (size,) = struct.unpack_from("<i", data, pos)
        if size < 1 or pos + 4 + size > end:
            raise ProtocolError("BSON string length is inconsistent")
        return data[pos + 4 : pos + 4 + size - 1].decode("utf-8", "replace"), pos + 4 + size
    if kind in (0x03, 0x04):
        (size,) = struct.unpack_from("<i", data, pos)
        if size < 5 or pos + size > end:
            raise ProtocolError("BSON sub-document length is inconsistent")
        doc = decode_document(data[pos : pos + size], depth + 1)
        return (list(doc.values()) if kind == 0x04 else doc), pos + size
    if kind == 0x05:
        (size,) = struct.unpack_from("<i", data, pos)
        if size < 0 or pos + 5 + size > end:
            raise ProtocolError("BSON binary length is inconsistent")
        return f"<binary {size} bytes>", pos + 5 + size
    if kind == 0x07:
        return data[pos : pos + 12].hex(), pos + 12
    if kind == 0x08:
        return data[pos] != 0, pos + 1
    if kind in (0x0A, 0x06, 0xFF, 0x7F):
        return None, pos
    if kind == 0x13:
        return "<decimal128>", pos + 16
    raise ProtocolError(f"unsupported BSON type 0x{kind:02x}")


def op_msg(request_id: int, command: dict[str, int | str]) -> bytes:
    """An OP_MSG with one body section (kind 0) carrying `command`."""
    body = struct.pack("<I", 0) + b"\x00" + encode_document(command)
    return HEADER.pack(HEADER.size + len(body), request_id, 0, OP_MSG) + body


def message_length(raw: bytes) -> int | None:
    """Total length announced by a message header, once 4 bytes have arrived."""
    if len(raw) < 4:
        return None
    length: int = struct.unpack_from("<i", raw)[0]
    return length


def message_complete(raw: bytes) -> bool:
    length = message_length(raw)
    return length is not None and (length <= 0 or length > MAX_MESSAGE or len(raw) >= length)


def parse_op_msg_reply(raw: bytes, request_id: int) -> dict[str, Any]:
    """The body document of the reply to `request_id`."""
    if len(raw) < HEADER.size + 5:
        raise ProtocolError("reply shorter than an OP_MSG header")
    length, _, response_to, opcode = HEADER.unpack_from(raw)
    if length > MAX_MESSAGE or length < HEADER.size + 5 or length > len(raw):
        raise ProtocolError(f"reply length {length} is inconsistent")
    if opcode != OP_MSG:
        raise ProtocolError(f"reply opcode {opcode} is not OP_MSG")
    if response_to != request_id:
        raise ProtocolError("reply answers another request")
    if raw[HEADER.size + 4] != 0:
        raise ProtocolError("reply does not start with a body section")
    return decode_document(raw[HEADER.size + 5 : length])
