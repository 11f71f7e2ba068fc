"""Read a growing fragmented MP4 incrementally, without decoding it.

The recorder writes `ftyp, moov, (moof, mdat)*`. A kill -9 can leave the last
`moof`/`mdat` pair half-written, which decoders reject. This module finds where the last
complete fragment ends (so a closed segment can be cut back to it) and how much media the
complete fragments hold (so the live duration costs a few hundred bytes of reading per
fragment, however long the file is). Only the boxes that carry timing are parsed:
tkhd/mdhd/hdlr/trex in the moov and tfhd/tfdt/trun in each moof.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

_CONTAINERS = {b"moov", b"trak", b"mdia", b"mvex", b"moof", b"traf"}


@dataclass
class _Track:
    timescale: int = 0
    kind: str = ""  # "video", "audio" or other handler type
    default_duration: int = 0
    start: int | None = None  # first tfdt, in timescale ticks
    end: int = 0  # end of the last complete sample, in timescale ticks


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """Yield (type, payload_start, box_end) for the boxes in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, pos + header, pos + size
        pos += size


@dataclass
class Fmp4Scan:
    """Incremental scan of one fMP4 file; call `update()` whenever it may have grown."""

    path: Path
    complete_bytes: int = 0  # file offset where the last complete box (pair) ends
    fragments: int = 0
    has_moov: bool = False
    init_end: int = 0  # file offset where ftyp+moov (the init segment) end
    tracks: dict[int, _Track] = field(default_factory=dict)

    def update(self) -> "Fmp4Scan":
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return self
        if size <= self.complete_bytes:
            return self
        with open(self.path, "rb") as f:
            pos = self.complete_bytes
            pending_moof: bytes | None = None
            while True:
                f.seek(pos)
                head = f.read(16)
                if len(head) < 8:
                    break
                box_size, kind = struct.unpack_from(">I4s", head)
                if box_size == 1 and len(head) == 16:
                    box_size = struct.unpack_from(">Q", head, 8)[0]
                if box_size < 8 or box_size == 1 or pos + box_size > size:
                    break  # incomplete (or still being written)
                if kind == b"moof":
                    f.seek(pos)
                    pending_moof = f.read(box_size)
                elif kind == b"mdat" and pending_moof is not None:
                    self._read_moof(pending_moof)
                    pending_moof = None
                    self.fragments += 1
                    self.complete_bytes = pos + box_size
                elif kind == b"moov":
                    f.seek(pos)
                    self._read_moov(f.read(box_size))
                    self.complete_bytes = self.init_end = pos + box_size
                elif pending_moof is None:
                    self.complete_bytes = pos + box_size  # ftyp, free, mfra...
                pos += box_size
        return self

    @property
    def duration(self) -> float:
        """Seconds of media in the complete fragments (the longest track)."""
        best = 0.0
        for track in self.tracks.values():
            if track.timescale and track.start is not None:
                best = max(best, (track.end - track.start) / track.timescale)
        return best

    def kinds(self) -> set[str]:
        return {t.kind for t in self.tracks.values() if t.kind in ("video", "audio")}

    # -- box parsing --

    def _read_moov(self, box: bytes) -> None:
        self.has_moov = True
        for kind, start, end in _boxes(box, 8):
            if kind == b"trak":
                self._read_trak(box, start, end)
            elif kind == b"mvex":
                for k, s, _e in _boxes(box, start, end):
                    if k == b"trex":
                        track_id, _desc, duration = struct.unpack_from(">III", box, s + 4)
                        self.tracks.setdefault(track_id, _Track()).default_duration = duration

    def _read_trak(self, box: bytes, start: int, end: int) -> None:
        track_id, timescale, handler = 0, 0, ""
        for kind, s, e in _boxes(box, start, end):
            if kind == b"tkhd":
                version = box[s]
                track_id = struct.unpack_from(">I", box, s + (20 if version == 1 else 12))[0]
            elif kind == b"mdia":
                for k, s2, _e2 in _boxes(box, s, e):
                    if k == b"mdhd":
                        version = box[s2]
                        timescale = struct.unpack_from(">I", box, s2 + (20 if version == 1 else 12))[0]
                    elif k == b"hdlr":
                        handler = box[s2 + 8 : s2 + 12].decode("latin-1")
        track = self.tracks.setdefault(track_id, _Track())
        track.timescale = timescale
        track.kind = {"vide": "video", "soun": "audio"}.get(handler, handler)

    def _read_moof(self, box: bytes) -> None:
        for kind, start, end in _boxes(box, 8):
            if kind == b"traf":
                self._read_traf(box, start, end)

    def _read_traf(self, box: bytes, start: int, end: int) -> None:
        track: _Track | None = None
        default_duration = 0
        base: int | None = None
        for kind, s, _e in _boxes(box, start, end):
            flags = int.from_bytes(box[s + 1 : s + 4], "big")
            if kind == b"tfhd":
                track_id = struct.unpack_from(">I", box, s + 4)[0]
                track = self.tracks.setdefault(track_id, _Track())
                default_duration = track.default_duration
                pos = s + 8
                pos += 8 if flags & 0x01 else 0
                pos += 4 if flags & 0x02 else 0
                if flags & 0x08:
                    default_duration = struct.unpack_from(">I", box, pos)[0]
            elif kind == b"tfdt" and track is not None:
                base = struct.unpack_from(">Q" if box[s] == 1 else ">I", box, s + 4)[0]
            elif kind == b"trun" and track is not None:
                count = struct.unpack_from(">I", box, s + 4)[0]
                pos = s + 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
                per_sample = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
                if flags & 0x100:
                    total = sum(
                        struct.unpack_from(">I", box, pos + i * per_sample)[0] for i in range(count)
                    )
                else:
                    total = default_duration * count
                begin = base if base is not None else track.end
                if track.start is None:
                    track.start = begin
                track.end = begin + total
                base = track.end


def scan(path: Path) -> Fmp4Scan:
    return Fmp4Scan(Path(path)).update()


def cut_to_complete(path: Path) -> int:
    """Truncate a closed segment to its last complete fragment; return the bytes removed."""
    info = scan(path)
    size = os.path.getsize(path)
    if not info.has_moov or size <= info.complete_bytes:
        return 0
    with open(path, "r+b") as f:
        f.truncate(info.complete_bytes)
        f.flush()
        os.fsync(f.fileno())
    return size - info.complete_bytes
