"""Read a growing fragmented MP4 incrementally, without decoding it, and repair a closed one.

The recorder writes `ftyp, moov, (moof, mdat)*`. A kill -9 can leave the last
`moof`/`mdat` pair half-written, which decoders reject. This module finds where the last
complete fragment ends and how much media the complete fragments hold (so the live
duration costs a few hundred bytes of reading per fragment, however long the file is).
Only the boxes that carry timing are parsed: tkhd/mdhd/hdlr/trex in the moov and
tfhd/tfdt/trun in each moof.

`repair()` is for a file whose writer is gone. Only a torn *last* fragment is cut; damage
anywhere else (a flipped size field, zeroed bytes) is wrapped in a `free` box up to the next
intact `moof` (or `moov`), so readers skip it and every intact fragment after it stays; a
file with no readable `moov` at all is renamed aside, never deleted. The skipped media shows
up as a hole in the scan (the next fragment's decode time jumps).
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("cht.fmp4")

_CONTAINERS = {b"moov", b"trak", b"mdia", b"mvex", b"moof", b"traf"}
#: Top-level boxes a fragmented MP4 may hold: any other type where a box should start is damage.
TOP_LEVEL = {b"ftyp", b"styp", b"moov", b"moof", b"mdat", b"free", b"skip", b"sidx", b"mfra", b"uuid",
             b"meta", b"prft", b"emsg", b"pdin", b"wide"}
HOLE_S = 0.25  # seconds: a larger jump in a track's decode time is media skipped as damaged


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
    holes: list[tuple[float, float]] = field(default_factory=list)  # seconds from the start: media skipped

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
                elif track.timescale and (begin - track.end) / track.timescale > HOLE_S:
                    self._hole((track.end - track.start) / track.timescale, (begin - track.start) / track.timescale)
                track.end = begin + total
                base = track.end


    def _hole(self, start: float, end: float) -> None:
        """Tracks of one fragment skip together: overlapping holes are one."""
        for i, (a, b) in enumerate(self.holes):
            if start <= b and end >= a:
                self.holes[i] = (min(a, start), max(b, end))
                return
        self.holes.append((start, end))


def scan(path: Path) -> Fmp4Scan:
    return Fmp4Scan(Path(path)).update()


@dataclass
class Repair:
    """What `repair()` did to one closed segment."""

    cut: int = 0  # bytes of a torn last fragment removed
    skipped: list[tuple[int, int]] = field(default_factory=list)  # byte ranges wrapped in `free` boxes
    set_aside: Path | None = None  # the new name of a file that cannot be read at all

    def describe(self, name: str) -> str:
        parts = []
        if self.skipped:
            parts.append(f"skipped {sum(b - a for a, b in self.skipped)} damaged bytes in {len(self.skipped)} place(s)")
        if self.cut:
            parts.append(f"cut {self.cut} bytes of a torn last fragment")
        if self.set_aside is not None:
            parts.append(f"no readable header: set aside as {self.set_aside.name}")
        return f"{name}: " + "; ".join(parts)


def _header(data, pos: int, size: int) -> tuple[bytes, int] | None:
    """(type, end) of a plausible top-level box at `pos` (its end may lie past EOF: torn)."""
    if pos + 8 > size:
        return None
    box_size, kind = struct.unpack_from(">I4s", data, pos)
    if kind not in TOP_LEVEL:
        return None
    if box_size == 1:
        if pos + 16 > size:
            return None
        box_size = struct.unpack_from(">Q", data, pos + 8)[0]
        if box_size < 16:
            return None
    elif box_size == 0:
        box_size = size - pos
    elif box_size < 8:
        return None
    return kind, pos + box_size


def _fragment_end(data, pos: int, size: int) -> int | None:
    """End of an intact moof+mdat pair at `pos`, else None."""
    moof = _header(data, pos, size)
    if moof is None or moof[0] != b"moof" or moof[1] > size:
        return None
    mdat = _header(data, moof[1], size)
    if mdat is None or mdat[0] != b"mdat" or mdat[1] > size:
        return None
    try:
        kinds = [k for k, _s, _e in _boxes(data[pos:moof[1]], 8)]
    except struct.error:
        return None
    return mdat[1] if b"traf" in kinds else None


def _moov_end(data, pos: int, size: int) -> int | None:
    box = _header(data, pos, size)
    if box is None or box[0] != b"moov" or box[1] > size:
        return None
    try:
        return box[1] if any(k == b"trak" for k, _s, _e in _boxes(data[pos:box[1]], 8)) else None
    except struct.error:
        return None


def _resync(data, start: int, size: int, kind: bytes) -> int | None:
    """Offset of the next intact moof+mdat (or moov) at or after `start`."""
    check = _fragment_end if kind == b"moof" else _moov_end
    at = start + 4
    while (at := data.find(kind, at)) != -1:
        if check(data, at - 4, size) is not None:
            return at - 4
        at += 1
    return None


def repair(path: Path) -> Repair:
    """Make a closed segment safe to read without throwing away media that can be read."""
    done = Repair()
    size = os.path.getsize(path)
    if size == 0:
        return done
    with open(path, "r+b") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            pos, has_moov, free = 0, False, []
            while pos < size:
                box = _header(data, pos, size)
                if box is not None and box[0] == b"moof":
                    end = _fragment_end(data, pos, size)
                elif box is not None and box[0] == b"moov":
                    end = _moov_end(data, pos, size)
                    has_moov = has_moov or end is not None
                else:
                    end = box[1] if box is not None and box[1] <= size and box[0] != b"mdat" else None
                if end is not None:
                    pos = end
                    continue
                nxt = _resync(data, pos, size, b"moof" if has_moov else b"moov")
                if nxt is None:
                    break  # nothing intact after this: a torn tail
                free.append((pos, nxt))
                pos = nxt
        if not has_moov:
            aside = _aside(path)
            os.rename(path, aside)
            done.set_aside = aside
            return done
        for a, b in free:
            if b - a >= 1 << 32:
                continue  # cannot be one plain box; readers stop there, as before
            f.seek(a)
            f.write(struct.pack(">I4s", b - a, b"free"))
            done.skipped.append((a, b))
        if pos < size:
            f.truncate(pos)
            done.cut = size - pos
        if done.skipped or done.cut:
            f.flush()
            os.fsync(f.fileno())
    return done


def _aside(path: Path) -> Path:
    """`seg_00003.mp4.damaged`, or `.damaged.1`… if that name is taken."""
    candidate, n = path.with_name(path.name + ".damaged"), 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.damaged.{n}")
    return candidate


def cut_to_complete(path: Path) -> int:
    """Repair a closed segment (see `repair`); return the bytes cut from its end."""
    return repair(path).cut
