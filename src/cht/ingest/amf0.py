"""AMF0, the value encoding of RTMP commands and FLV metadata: just what a publisher sends
and what the server answers (numbers, booleans, strings, objects, arrays, null)."""

from __future__ import annotations

import struct


class AmfError(ValueError):
    """Bytes that are not the AMF0 they claim to be."""


_OBJECT_END = b"\x00\x00\x09"


def decode_all(data: bytes) -> list:
    """Every value in `data`, in order."""
    values, pos = [], 0
    while pos < len(data):
        value, pos = _decode(data, pos, depth=0)
        values.append(value)
    return values


def _need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise AmfError("truncated AMF0 value")


def _string(data: bytes, pos: int, size_bytes: int) -> tuple[str, int]:
    _need(data, pos, size_bytes)
    (n,) = struct.unpack_from(">H" if size_bytes == 2 else ">I", data, pos)
    pos += size_bytes
    _need(data, pos, n)
    return data[pos:pos + n].decode("utf-8", "replace"), pos + n


def _properties(data: bytes, pos: int, depth: int) -> tuple[dict, int]:
    out: dict = {}
    while True:
        if data[pos:pos + 3] == _OBJECT_END:
            return out, pos + 3
        key, pos = _string(data, pos, 2)
        out[key], pos = _decode(data, pos, depth + 1)


def _decode(data: bytes, pos: int, depth: int):
    if depth > 16:
        raise AmfError("AMF0 nested too deep")
    _need(data, pos, 1)
    marker = data[pos]
    pos += 1
    if marker == 0x00:
        _need(data, pos, 8)
        return struct.unpack_from(">d", data, pos)[0], pos + 8
    if marker == 0x01:
        _need(data, pos, 1)
        return data[pos] != 0, pos + 1
    if marker == 0x02:
        return _string(data, pos, 2)
    if marker == 0x0C:
        return _string(data, pos, 4)
    if marker == 0x03:
        return _properties(data, pos, depth)
    if marker == 0x08:  # ECMA array: a count (not trusted), then properties
        _need(data, pos, 4)
        return _properties(data, pos + 4, depth)
    if marker == 0x0A:
        _need(data, pos, 4)
        (count,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if count > len(data):
            raise AmfError("AMF0 array longer than its message")
        items = []
        for _ in range(count):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if marker in (0x05, 0x06):
        return None, pos
    if marker == 0x0B:
        _need(data, pos, 10)
        return struct.unpack_from(">d", data, pos)[0], pos + 10
    raise AmfError(f"unsupported AMF0 marker 0x{marker:02x}")


def encode(*values) -> bytes:
    return b"".join(_encode(v) for v in values)


def _encode(value) -> bytes:
    if value is None:
        return b"\x05"
    if isinstance(value, bool):
        return b"\x01" + (b"\x01" if value else b"\x00")
    if isinstance(value, (int, float)):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        return b"\x02" + struct.pack(">H", len(raw)) + raw
    if isinstance(value, dict):
        body = b"".join(struct.pack(">H", len(k.encode())) + k.encode() + _encode(v) for k, v in value.items())
        return b"\x03" + body + _OBJECT_END
    raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def skip_string(data: bytes, text: str) -> bytes:
    """`data` without a leading AMF0 string equal to `text` (e.g. '@setDataFrame')."""
    raw = text.encode()
    head = b"\x02" + struct.pack(">H", len(raw)) + raw
    return data[len(head):] if data.startswith(head) else data
