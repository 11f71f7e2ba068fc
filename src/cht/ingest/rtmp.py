"""The server side of an RTMP publish, so that the ingest decides who may publish before
any ffmpeg sees a byte: the handshake, the chunk stream, the few commands a publisher sends
(connect, releaseStream, FCPublish, createStream, publish), the app and stream-key check,
and the media rewritten as the FLV byte stream the recorder reads.

ffmpeg's own RTMP listener accepts any stream key (a wrong one is only a warning), serves
one client and exits, and waits forever on a client that never finishes its handshake;
hence this module. Simple handshake (S1 carries no digest: OBS's librtmp and ffmpeg accept
it); no RTMPE, no playing.

Nothing is proven before `publish` names the stream key, so until then a connection may
only send what a publisher's commands need: small messages on a few chunk streams. After
it, a message may be as large as a real encoder's biggest keyframe, and the messages being
assembled at once are capped too: a client declares lengths, we never trust them.
"""

from __future__ import annotations

import hmac
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Iterator

from cht.ingest import amf0

HANDSHAKE_SIZE = 1536
MAX_MESSAGE = 8 << 20  # bytes: no encoder's message is larger (a 4K keyframe is ~1-3 MiB; the field allows 16)
MAX_ASSEMBLING = 16 << 20  # bytes of messages being assembled at once on a publishing connection
MAX_CHUNK_STREAMS = 64
PRE_MAX_MESSAGE = 64 << 10  # bytes: before publish, only commands (connect is a few hundred bytes)
PRE_MAX_ASSEMBLING = 128 << 10  # bytes being assembled at once before publish
PRE_CHUNK_STREAMS = 8  # chunk streams before publish (publishers use 2-5)
PRE_READ = 1 << 14  # bytes per recv before publish, so the read buffer stays small too
OUT_CHUNK = 4096
WINDOW = 2_500_000  # bytes: the acknowledgement window we announce

# message types
SET_CHUNK_SIZE, ABORT, ACK, USER_CONTROL, WINDOW_ACK_SIZE, SET_PEER_BW = 1, 2, 3, 4, 5, 6
AUDIO, VIDEO, DATA_AMF3, COMMAND_AMF3, DATA_AMF0, COMMAND_AMF0, AGGREGATE = 8, 9, 15, 17, 18, 20, 22
MEDIA_TYPES = (AUDIO, VIDEO, DATA_AMF0)


class ProtocolError(Exception):
    """The peer is not speaking RTMP as a publisher does: the connection is dropped."""


class Rejected(ProtocolError):
    """A well-formed publish we refuse (wrong app or stream key, a player): the peer was told."""


@dataclass
class _ChunkStream:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type: int = 0
    stream_id: int = 0
    extended: bool = False
    body: bytearray | None = None  # the message being assembled


class RtmpPublish:
    """One client connection, from handshake to the end of its publish.

    `handshake()` and `wait_for_publish()` run under the caller's short socket timeout (a
    half-open or silent peer is dropped); `flv()` then yields the media as FLV bytes, one
    whole tag (or the header) per item, until the client unpublishes or goes away.
    """

    def __init__(self, sock: socket.socket, *, app: str | None, key: str | None) -> None:
        self.sock = sock
        self.app = app  # None: any app
        self.key = key  # None: any stream key (loopback only)
        self.stream_name = ""
        self._buf = bytearray()
        self._pos = 0
        self.received = 0
        self._acked = 0
        self._ack_window = 0
        self._in_chunk = 128
        self._streams: dict[int, _ChunkStream] = {}
        self._assembling = 0  # bytes declared by the messages being assembled
        self._connected = False
        self.deadline: float | None = None  # monotonic s by which the publish must be under way
        self.flv_writer = FlvWriter()

    # -- reading --

    def _fill(self, n: int) -> None:
        while len(self._buf) - self._pos < n:
            if self._pos > 1 << 16:
                del self._buf[:self._pos]
                self._pos = 0
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise ProtocolError("too slow to start publishing")
            chunk = self.sock.recv((1 << 18) if self.stream_name else PRE_READ)
            if not chunk:
                raise EOFError("the client closed the connection")
            self._buf += chunk
            self.received += len(chunk)
            if self._ack_window and self.received - self._acked >= self._ack_window:
                self._acked = self.received
                self._send(2, ACK, 0, struct.pack(">I", self.received & 0xFFFFFFFF))

    def _take(self, n: int) -> bytes:
        self._fill(n)
        out = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        return out

    def handshake(self) -> None:
        c0 = self._take(1)
        if c0 != b"\x03":
            raise ProtocolError(f"not an RTMP handshake (first byte 0x{c0[0]:02x})")
        c1 = self._take(HANDSHAKE_SIZE)
        s1 = struct.pack(">II", 0, 0) + os.urandom(HANDSHAKE_SIZE - 8)
        s2 = c1[:4] + struct.pack(">I", 0) + c1[8:]
        self.sock.sendall(b"\x03" + s1 + s2)
        self._take(HANDSHAKE_SIZE)  # C2: an echo of S1 that nothing depends on

    def _message(self) -> tuple[int, int, int, bytes]:
        """The next complete message: (type, stream id, timestamp ms, body)."""
        while True:
            b0 = self._take(1)[0]
            fmt, csid = b0 >> 6, b0 & 0x3F
            if csid == 0:
                csid = 64 + self._take(1)[0]
            elif csid == 1:
                b = self._take(2)
                csid = 64 + b[0] + (b[1] << 8)
            cs = self._streams.get(csid)
            if cs is None:
                if fmt != 0:
                    raise ProtocolError(f"chunk stream {csid} starts without a full header")
                if len(self._streams) >= (MAX_CHUNK_STREAMS if self.stream_name else PRE_CHUNK_STREAMS):
                    raise ProtocolError(f"too many chunk streams ({len(self._streams) + 1})")
                cs = self._streams[csid] = _ChunkStream()
            new = cs.body is None
            if fmt < 3:
                if not new:
                    raise ProtocolError(f"chunk stream {csid}: a new header inside a message")
                h = self._take((11, 7, 3)[fmt])
                ts = int.from_bytes(h[0:3], "big")
                if fmt < 2:
                    cs.length = int.from_bytes(h[3:6], "big")
                    cs.type = h[6]
                if fmt == 0:
                    cs.stream_id = int.from_bytes(h[7:11], "little")
                cs.extended = ts == 0xFFFFFF
                if cs.extended:
                    ts = int.from_bytes(self._take(4), "big")
                cs.delta = ts
                cs.timestamp = ts if fmt == 0 else cs.timestamp + ts
            else:
                if cs.extended:
                    self._take(4)
                if new:
                    cs.timestamp += cs.delta
            if new:
                self._begin(cs.length)
                cs.body = bytearray()
            n = min(self._in_chunk, cs.length - len(cs.body))
            self._fill(n)
            cs.body += self._buf[self._pos:self._pos + n]
            self._pos += n
            if len(cs.body) >= cs.length:
                body, cs.body = bytes(cs.body), None
                self._assembling -= cs.length
                if cs.type == SET_CHUNK_SIZE:
                    self._set_chunk_size(body)
                    continue
                if cs.type == ABORT:
                    continue
                if cs.type == WINDOW_ACK_SIZE and len(body) >= 4:
                    self._ack_window = struct.unpack(">I", body[:4])[0]
                    continue
                if cs.type in (ACK, USER_CONTROL, SET_PEER_BW):
                    continue
                return cs.type, cs.stream_id, cs.timestamp & 0xFFFFFFFF, body

    def _begin(self, length: int) -> None:
        """A message of `length` bytes starts: refuse what no publisher at this stage sends."""
        largest, budget = (MAX_MESSAGE, MAX_ASSEMBLING) if self.stream_name else (PRE_MAX_MESSAGE, PRE_MAX_ASSEMBLING)
        if length > largest:
            stage = "" if self.stream_name else " before publishing"
            raise ProtocolError(f"a {length}-byte message{stage}: larger than any RTMP publisher sends")
        if self._assembling + length > budget:
            raise ProtocolError(f"{self._assembling + length} bytes of unfinished messages: more than a publisher sends")
        self._assembling += length

    def _set_chunk_size(self, body: bytes) -> None:
        if len(body) < 4:
            raise ProtocolError("a short Set Chunk Size message")
        size = struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF
        if not 1 <= size <= MAX_MESSAGE:
            raise ProtocolError(f"chunk size {size} out of range")
        self._in_chunk = size

    # -- writing --

    def _send(self, csid: int, mtype: int, stream_id: int, body: bytes, timestamp: int = 0) -> None:
        header = bytes([csid]) + min(timestamp, 0xFFFFFF).to_bytes(3, "big") + len(body).to_bytes(3, "big") \
            + bytes([mtype]) + struct.pack("<I", stream_id)
        pieces = [header, body[:OUT_CHUNK]]
        for i in range(OUT_CHUNK, len(body), OUT_CHUNK):
            pieces += [bytes([0xC0 | csid]), body[i:i + OUT_CHUNK]]
        self.sock.sendall(b"".join(pieces))

    def _command(self, *values, stream_id: int = 0) -> None:
        self._send(3 if stream_id == 0 else 5, COMMAND_AMF0, stream_id, amf0.encode(*values))

    def _status(self, level: str, code: str, description: str) -> None:
        self._command("onStatus", 0, None, {"level": level, "code": code, "description": description}, stream_id=1)

    # -- the publish --

    def _decode_command(self, mtype: int, body: bytes) -> list:
        if mtype == COMMAND_AMF3:
            body = body[1:]  # AMF3 commands carry AMF0 after a format byte
        try:
            values = amf0.decode_all(body)
        except amf0.AmfError as exc:
            raise ProtocolError(f"unreadable command: {exc}") from None
        if not values or not isinstance(values[0], str):
            raise ProtocolError("a command without a name")
        return values

    def wait_for_publish(self) -> str:
        """Answer the commands up to an accepted publish; returns the stream name."""
        while True:
            mtype, _, _, body = self._message()
            if mtype not in (COMMAND_AMF0, COMMAND_AMF3):
                if mtype in MEDIA_TYPES and self.stream_name:
                    continue
                raise ProtocolError(f"message type {mtype} before publishing")
            values = self._decode_command(mtype, body)
            name, txid = values[0], values[1] if len(values) > 1 else 0
            if name == "connect":
                self._on_connect(txid, values[2] if len(values) > 2 and isinstance(values[2], dict) else {})
            elif not self._connected:
                raise ProtocolError(f"command {name!r} before connect")
            elif name in ("releaseStream", "FCPublish"):
                self._command("_result", txid, None)
            elif name == "createStream":
                self._command("_result", txid, None, 1)
            elif name == "publish":
                return self._on_publish(values)
            elif name == "play":
                self._status("error", "NetStream.Play.Failed", "this server takes published streams only")
                raise Rejected("a player, not a publisher")

    def _on_connect(self, txid, props: dict) -> None:
        app = str(props.get("app", "")).split("?", 1)[0].strip("/")
        if self.app is not None and app != self.app:
            self._command("_error", txid, None, {"level": "error", "code": "NetConnection.Connect.Rejected",
                                                 "description": "unknown application"})
            raise Rejected(f"unknown app {app!r}")
        self._send(2, WINDOW_ACK_SIZE, 0, struct.pack(">I", WINDOW))
        self._send(2, SET_PEER_BW, 0, struct.pack(">IB", WINDOW, 2))
        self._send(2, SET_CHUNK_SIZE, 0, struct.pack(">I", OUT_CHUNK))
        self._command("_result", txid, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31},
                      {"level": "status", "code": "NetConnection.Connect.Success",
                       "description": "Connection succeeded.", "objectEncoding": 0})
        self._connected = True

    def _on_publish(self, values: list) -> str:
        name = values[3] if len(values) > 3 and isinstance(values[3], str) else ""
        key = name.split("?", 1)[0]
        if self.key is not None and not hmac.compare_digest(key.encode(), self.key.encode()):
            self._status("error", "NetStream.Publish.BadName", "wrong stream key")
            raise Rejected("wrong stream key")
        self._status("status", "NetStream.Publish.Start", "publishing")
        self.stream_name = key
        return key

    def refuse(self, reason: str) -> None:
        """Tell an accepted publisher it cannot publish after all (someone else is)."""
        try:
            self._status("error", "NetStream.Publish.BadName", reason)
        except OSError:
            pass

    def linger(self, seconds: float = 2.0) -> None:
        """After an unpublish, let the client say the rest of its goodbye (deleteStream, then
        it closes) rather than reset it mid-write: ffmpeg exits with an error on that."""
        self.sock.settimeout(seconds)
        try:
            while self.sock.recv(1 << 16):
                pass
        except OSError:
            pass

    def flv(self) -> Iterator[bytes]:
        """The published media as FLV, until the client unpublishes or disconnects."""
        while True:
            try:
                mtype, _, ts, body = self._message()
            except EOFError:
                return
            if mtype in MEDIA_TYPES:
                tag = self.flv_writer.tag(mtype, ts, body)
                if tag:
                    yield tag
            elif mtype == AGGREGATE:
                yield from self._aggregate(ts, body)
            elif mtype in (COMMAND_AMF0, COMMAND_AMF3):
                name = self._decode_command(mtype, body)[0]
                if name in ("deleteStream", "FCUnpublish", "closeStream"):
                    return

    def _aggregate(self, ts: int, body: bytes) -> Iterator[bytes]:
        """An aggregate message is FLV tags back to back, timed relative to the first."""
        pos, first = 0, None
        while pos + 11 <= len(body):
            mtype, size = body[pos], int.from_bytes(body[pos + 1:pos + 4], "big")
            sub_ts = int.from_bytes(body[pos + 4:pos + 7], "big") | (body[pos + 7] << 24)
            first = sub_ts if first is None else first
            data = body[pos + 11:pos + 11 + size]
            pos += 11 + size + 4
            if mtype in MEDIA_TYPES and len(data) == size:
                tag = self.flv_writer.tag(mtype, ts + sub_ts - first, data)
                if tag:
                    yield tag


class FlvWriter:
    """RTMP media messages as FLV tags; remembers the tags a decoder must see first
    (metadata, codec sequence headers) so a recorder that joins later can be given them."""

    def __init__(self) -> None:
        self._header: bytes | None = None
        self._metadata: bytes | None = None
        self._sequence: dict[int, bytes] = {}
        self._last_ts = 0

    def tag(self, mtype: int, ts: int, data: bytes) -> bytes:
        if mtype == DATA_AMF0:
            data = amf0.skip_string(data, "@setDataFrame")
            if not data.startswith(amf0.encode("onMetaData")):
                return b""
        if not data:
            return b""
        tag = _tag(mtype, ts, data)
        self._last_ts = ts
        if mtype == DATA_AMF0:
            self._metadata = data
        elif _is_sequence_header(mtype, data):
            self._sequence[mtype] = data
        if self._header is None:
            self._header = _flv_header(self._metadata)
            return self._header + tag
        return tag

    def resume(self) -> bytes:
        """What a recorder joining mid-stream needs before the next tag."""
        if self._header is None:
            return b""
        parts = [self._header]
        if self._metadata is not None:
            parts.append(_tag(DATA_AMF0, self._last_ts, self._metadata))
        for mtype in (VIDEO, AUDIO):
            if mtype in self._sequence:
                parts.append(_tag(mtype, self._last_ts, self._sequence[mtype]))
        return b"".join(parts)


def _tag(mtype: int, ts: int, data: bytes) -> bytes:
    head = bytes([mtype]) + len(data).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big") \
        + bytes([(ts >> 24) & 0xFF]) + b"\0\0\0"
    return head + data + struct.pack(">I", 11 + len(data))


def _flv_header(metadata: bytes | None) -> bytes:
    flags = 0x05
    if metadata is not None:
        try:
            values = amf0.decode_all(metadata)
            meta = values[1] if len(values) > 1 and isinstance(values[1], dict) else {}
        except amf0.AmfError:
            meta = {}
        if meta:
            flags = (0x04 if "audiocodecid" in meta else 0) | (0x01 if "videocodecid" in meta else 0) or 0x05
    return b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + b"\0\0\0\0"


def _is_sequence_header(mtype: int, data: bytes) -> bool:
    if len(data) < 2:
        return False
    if mtype == VIDEO:
        if data[0] & 0x80:  # enhanced RTMP (HEVC, AV1, VP9): packet type 0 is SequenceStart
            return data[0] & 0x0F == 0
        return data[0] & 0x0F in (7, 12) and data[1] == 0  # AVC / HEVC config record
    if data[0] >> 4 == 9:  # enhanced audio
        return data[0] & 0x0F == 0
    return data[0] >> 4 == 10 and data[1] == 0  # AAC AudioSpecificConfig
