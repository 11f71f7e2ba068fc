"""Scene and slide-change detection, and the keyframes it saves.

`SlideChangeDetector` sees small grey frames on the global clock and says when a new scene
starts. It finds two kinds of change:

* hard cuts — at least `cut_fraction` of the grid changes from one sample to the next
  while the sample before was calm: reported at once;
* slide changes — a screen share gains a bullet line or turns a page. Following the slide
  extractors, it waits for the picture to settle and compares it with the last *saved*
  picture, counting grid cells that changed and then stayed put. The change is dated at
  when those cells changed, not when they settled.

What must not count: a moving pointer, a blinking cursor or a webcam box. A cell that changed
more than once in the last `video_window` samples, or in a large share of samples over the
last half minute (the area a webcam box moves over), is live video and left out until it rests;
new content must come in clusters of `min_cluster` neighbouring cells, so the few scattered
cells a resting pointer or a moving box edge leave behind never add up to a slide change
(they are absorbed silently once they rest).

`KeyframeWriter` saves each detection as a full-resolution JPEG plus a thumbnail in
`frames/` and appends one JSON line to `frames.jsonl` (append-only: the truth for frames).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import deque
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from cht.config import SceneOptions

log = logging.getLogger("cht.analyze")


@dataclass
class Detection:
    t: float  # global seconds
    score: float  # share of the grid that changed
    kind: str  # scene | manual | start


@dataclass
class FrameRecord:
    t: float
    file: str  # relative to the session dir
    thumb: str
    score: float
    kind: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "FrameRecord":
        return cls(**json.loads(line))


def grey(frame: av.VideoFrame, width: int) -> np.ndarray:
    """A small grey copy of the frame, about `width` pixels wide.

    For the planar YUV that decoders give, this is the luma plane taken every n-th pixel:
    no scaling filter, so it costs microseconds where a swscale resize costs a millisecond.
    """
    if frame.format.name in _PLANAR_YUV:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        step = max(1, round(frame.width / width))
        return np.ascontiguousarray(luma[::step, ::step])
    height = max(2, int(round(frame.height * width / frame.width / 2)) * 2)
    return frame.reformat(width=width, height=height, format="gray").to_ndarray()


_PLANAR_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"}


class SlideChangeDetector:
    def __init__(self, options: SceneOptions | None = None) -> None:
        self.o = options or SceneOptions()
        self._prev: np.ndarray | None = None
        self._ref: np.ndarray | None = None  # the last saved picture
        self._last_change: np.ndarray | None = None  # per cell: global time it last changed
        self._recent: deque[np.ndarray] = deque(maxlen=self.o.video_window)  # per-sample changed cells
        self._rate: np.ndarray | None = None  # per cell: long-term share of samples it changed in
        self._prev_t = 0.0
        self._prev_fraction = 0.0
        self._pending_cut: tuple[float, float] | None = None  # (t, fraction) of a cut out of motion
        self._last_detection = float("-inf")

    def process(self, t: float, image: np.ndarray) -> Detection | None:
        image = self._crop(image)
        if self._prev is None:
            self._prev, self._ref = image, image.copy()
            self._last_change = np.full(self._grid(image), t)
            self._rate = np.zeros(self._grid(image))
            self._last_detection = self._prev_t = t
            return Detection(t, 1.0, "start")
        o = self.o
        changed = self._changed_cells(image, self._prev)
        fraction = float(changed.mean())
        calm_before = self._prev_fraction < o.cut_fraction / 2
        self._recent.append(changed)
        self._last_change[changed] = t
        decay = math.exp(-max(t - self._prev_t, 1e-3) / o.video_tau_s)
        self._rate = self._rate * decay + changed * (1 - decay)
        self._prev_t = t
        self._prev, self._prev_fraction = image, fraction

        # A hard cut: most of the picture changes at once, out of a calm picture (reported at
        # once) or out of motion into a calm picture (reported one sample later).
        cut = None
        if fraction >= o.cut_fraction:
            if calm_before:
                cut = (t, fraction)
            else:
                self._pending_cut = (t, fraction)
        elif self._pending_cut is not None:
            if fraction < o.cut_fraction / 2:
                cut = self._pending_cut
            self._pending_cut = None
        if cut is not None:
            self._ref = image.copy()
            return self._report(*cut)

        # A slide change: enough cells settle on content that differs from the saved picture.
        video = (np.sum(self._recent, axis=0) >= o.video_changes) | (self._rate >= o.video_rate)
        settled = (t - self._last_change >= o.settle_s) & ~video
        differs = self._changed_cells(image, self._ref) & settled
        if not differs.any():
            return None
        # New content comes in clusters (a text line, a picture); a resting pointer or the
        # edge of a moving webcam box leaves small scattered ones.
        significant = clusters_at_least(differs, o.min_cluster)
        count = int(significant.sum())
        if count >= o.min_blocks:
            self._ref = image.copy()
            return self._report(float(np.median(self._last_change[significant])), count / differs.size)
        # Small changes are accepted silently once they have rested.
        self._copy_cells(self._ref, image, differs & (t - self._last_change >= o.absorb_s))
        return None

    def _report(self, t: float, score: float) -> Detection | None:
        if t - self._last_detection < self.o.min_scene_s:
            return None
        self._last_detection = t
        return Detection(t, round(score, 4), "scene")

    # -- the grid --

    def _crop(self, image: np.ndarray) -> np.ndarray:
        b = self.o.block
        return image[: image.shape[0] // b * b, : image.shape[1] // b * b]

    def _grid(self, image: np.ndarray) -> tuple[int, int]:
        return image.shape[0] // self.o.block, image.shape[1] // self.o.block

    def _changed_cells(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        rows, cols = self._grid(a)
        moved = np.abs(a.astype(np.int16) - b.astype(np.int16)) > self.o.pixel_noise
        share = moved.reshape(rows, self.o.block, cols, self.o.block).mean(axis=(1, 3))
        return share >= self.o.block_changed

    def _copy_cells(self, dst: np.ndarray, src: np.ndarray, cells: np.ndarray) -> None:
        if cells.any():
            mask = np.repeat(np.repeat(cells, self.o.block, axis=0), self.o.block, axis=1)
            dst[mask] = src[mask]


def clusters_at_least(cells: np.ndarray, size: int) -> np.ndarray:
    """The cells that belong to 8-connected groups of at least `size` cells."""
    rows, cols = cells.shape
    seen = np.zeros_like(cells)
    keep = np.zeros_like(cells)
    for r0, c0 in zip(*np.nonzero(cells)):
        if seen[r0, c0]:
            continue
        group, stack = [], [(r0, c0)]
        seen[r0, c0] = True
        while stack:
            r, c = stack.pop()
            group.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < rows and 0 <= cc < cols and cells[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        if len(group) >= size:
            for r, c in group:
                keep[r, c] = True
    return keep


def encode_jpeg(frame: av.VideoFrame, width: int | None = None) -> bytes:
    """JPEG bytes of a frame, scaled to `width` if given (PyAV's mjpeg encoder)."""
    w = width or frame.width
    h = max(2, int(round(frame.height * w / frame.width / 2)) * 2)
    image = frame.reformat(width=w, height=h, format="yuvj420p")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"qmin": "2", "qmax": "5"}
    packets = [*ctx.encode(image), *ctx.encode(None)]
    return b"".join(bytes(p) for p in packets)


class KeyframeWriter:
    """Saves keyframes and appends their records to frames.jsonl."""

    def __init__(self, session_dir: Path, options: SceneOptions | None = None) -> None:
        self.root = session_dir
        self.frames_dir = session_dir / "frames"
        self.log_path = session_dir / "frames.jsonl"
        self.thumb_width = (options or SceneOptions()).thumb_width
        self.frames_dir.mkdir(exist_ok=True)

    def save(self, frame: av.VideoFrame, detection: Detection) -> FrameRecord:
        return self.append(self.pictures(frame, detection))

    def pictures(self, frame: av.VideoFrame, detection: Detection) -> FrameRecord:
        """Write the keyframe and its thumbnail; the record is not logged yet."""
        stem = f"{detection.t:010.3f}"
        if detection.kind == "manual":
            stem += "-manual"
        full = self.frames_dir / f"{stem}.jpg"
        thumb = self.frames_dir / f"{stem}.thumb.jpg"
        full.write_bytes(encode_jpeg(frame))
        thumb.write_bytes(encode_jpeg(frame, min(self.thumb_width, frame.width)))
        return FrameRecord(
            t=round(detection.t, 3),
            file=str(full.relative_to(self.root)),
            thumb=str(thumb.relative_to(self.root)),
            score=detection.score,
            kind=detection.kind,
        )

    def append(self, record: FrameRecord) -> FrameRecord:
        """Log a record in frames.jsonl (append, flush, fsync)."""
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record


def read_frames(session_dir: Path) -> list[FrameRecord]:
    """frames.jsonl, ignoring a torn last line (a kill while appending) and records whose
    pictures lie outside the session."""
    path = session_dir / "frames.jsonl"
    if not path.exists():
        return []
    records = []
    root = session_dir.resolve()
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = FrameRecord.from_json(line.decode("utf-8"))
        except (ValueError, TypeError, KeyError):
            where = "its last line is cut short" if number == len(lines) else f"line {number} is unreadable"
            log.warning("frames.jsonl: %s; ignored", where)
            continue
        if not all(_inside(root, name) for name in (record.file, record.thumb)):
            log.warning("frames.jsonl: line %d names a file outside the session (%s); ignored", number, record.file)
            continue
        records.append(record)
    return records


def _inside(root: Path, name: object) -> bool:
    """A record's picture must resolve inside the session dir: the export copies it and
    analysis moves it, so a path out of the session would reach the user's other files."""
    return isinstance(name, str) and not Path(name).is_absolute() and (root / name).resolve().is_relative_to(root)
