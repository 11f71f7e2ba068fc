"""Scene and slide-change detection, and the keyframes it saves.

`SlideChangeDetector` sees small grey frames on the global clock and says when a new scene
starts. Its decisions do not depend on the picture's size, the text size, the theme or the
bitrate:

* the frames arrive area-averaged to about 320 pixels wide (`grey`), so a glyph of any size
  keeps its ink (a 4K frame is not point-sampled into missing thin strokes) and compression
  noise averages out; the grid is 2×2 of those pixels, a fixed share of the picture;
* a cell changes when its largest pixel difference passes `noise_factor` times the noise
  this very stream shows (the median move, over the last `noise_window` sample pairs, of the
  cells with detail that move by less than half their contrast: re-quantised text edges,
  grain), and never less than `min_level`;
* new content may be as small as `min_cells` cells (two or three characters): what keeps a
  pointer, a blinking cursor, a webcam box, a video in a slide and noise out is how they
  behave in time, not their size.

Two kinds of change:

* hard cuts — at least `cut_fraction` of the grid changes from one sample to the next
  while the sample before was calm: reported at once;
* slide changes — after the slide extractors, the picture must settle (`settle_s` without
  movement) on content that differs from the last *saved* picture. A change is dated at the
  middle of the time its cells moved, so a fade-in or a dissolve counts once, at its middle.

What must not count, and why it does not:

* live video (a webcam box, a video in a slide, a blinking cursor, a pointer's path): a cell
  that moves one way and then back within `reversal_s` is live for `live_hold_s`. Cells that
  did so twice lately, or that keep moving (a share `video_rate` of the samples over about
  `video_tau_s`), are video, and the box around each group of them is a video region, still
  parts and moving edges included; live cells, their neighbours and video regions are left
  out. A fade or a dissolve moves its cells one way only, so it is never live.
* a pointer coming to rest (or leaving the place it rested): its last steps leave cells
  that went and came back once, near it and at about the same time (`trail_s`). A small
  settled change with such a trail around it is the pointer; it is taken into the saved
  picture without a report. A cursor's or a video's cells reverse over and over, so they
  are no trail.
* leftovers smaller than `min_cells` are accepted silently after `absorb_s`;
* while live cells and video regions cover `camera_share` of the picture, it is a camera
  shot (or a full-screen video): only cuts are reported.

`KeyframeWriter` saves each detection as a full-resolution JPEG plus a thumbnail in
`frames/` and appends one JSON line to `frames.jsonl` (append-only: the truth for frames).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import deque
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from cht.config import SceneOptions

log = logging.getLogger("cht.analyze")

FRAMES_LOG = "frames.jsonl"  # one keyframe record a line, in a session dir


FrameKind = Literal["start", "scene", "manual"]


@dataclass
class Detection:
    t: float  # global seconds
    score: float  # share of the grid that changed
    kind: FrameKind


@dataclass
class FrameRecord:
    t: float
    file: str  # relative to the session dir
    thumb: str
    score: float
    kind: FrameKind

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> FrameRecord:
        return cls(**json.loads(line))


def grey(frame: av.VideoFrame, width: int) -> np.ndarray:
    """A small grey copy of the frame, about `width` pixels wide, each pixel the mean of the
    area it covers (swscale's area filter: 0.7 ms for a 1080p frame). Point sampling would
    skip thin strokes of large frames and keep the full compression noise."""
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:  # one per thread: it keeps its swscale context while sizes stay
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter.reformat(frame, width, height, "gray", interpolation="AREA").to_ndarray()


_local = threading.local()


class SlideChangeDetector:
    def __init__(self, options: SceneOptions | None = None) -> None:
        self.o = options or SceneOptions()
        self._prev: np.ndarray | None = None
        self._ref: np.ndarray | None = None  # the last saved picture
        self._prev_t = 0.0
        self._prev_fraction = 0.0
        self._pending_cut: tuple[float, float] | None = None  # (t, fraction) of a cut out of motion
        self._last_detection = float("-inf")
        self._noise: deque[float] = deque(maxlen=self.o.noise_window)  # noise of recent sample pairs

    def _start(self, t: float, image: np.ndarray) -> None:
        shape = self._grid(image)
        self._prev, self._ref = image, image.copy()
        self._prev_detail = self._detail(image)
        self._ref_t = t  # when the saved picture was taken
        never = np.full(shape, -1e9)
        self._last_move = np.full(shape, t)  # per cell: when it last moved
        self._onset = np.full(shape, t)  # when its current movement began (middle of that sample interval)
        self._end = np.full(shape, t)  # when it last moved (middle of that sample interval)
        self._dir = np.zeros(shape, np.int8)  # the sign of its last movement
        self._last_rev = never.copy()  # when it last went back the way it came
        self._trail = never.copy()  # when it last did so for the first time in a while (a pointer passing)
        self._live_until = never.copy()
        self._rate = np.zeros(shape)  # long-term share of samples it moved in
        self._reversals = np.zeros(shape)  # reversals lately (decaying over `live_hold_s`)
        self._live = np.zeros(shape, bool)  # live video, cursors, pointer paths as of the last sample
        self._last_detection = self._prev_t = t

    def _measure_noise(self, image: np.ndarray, size: np.ndarray) -> None:
        """The noise of this pair where compression noise lives: in cells with detail (text,
        edges; any cell once grain covers the picture) that move by less than half their own
        contrast. Their median move: a pointer, new text or a moving part of a video moves a
        cell by about its whole contrast and covers far fewer cells. Live cells are left out
        unless they are most of the picture (then the threshold is below the noise itself)."""
        current = self._detail(image)
        detail = np.maximum(current, self._prev_detail)
        self._prev_detail = current
        cells = (detail >= 2 * self.o.min_level) & (size <= self.o.noise_share * detail)
        if self._live.mean() < 0.5:
            cells &= ~self._live
        if cells.sum() >= self.o.noise_cells:
            self._noise.append(float(np.median(size[cells])))

    def _detail(self, image: np.ndarray) -> np.ndarray:
        """Per cell: its contrast (brightest minus darkest pixel)."""
        parts = self._parts(image)
        return np.maximum.reduce(parts) - np.minimum.reduce(parts)

    def _parts(self, image: np.ndarray) -> list[np.ndarray]:
        """The image as block×block interleaved grids, one per pixel offset in a cell: cell
        statistics as element-wise operations, far cheaper than reducing a reshaped view."""
        b = self.o.block
        return [image[i::b, j::b] for i in range(b) for j in range(b)]

    @property
    def threshold(self) -> float:
        """Grey levels a cell must move by to count: a multiple of the measured noise floor."""
        o = self.o
        noise = float(np.median(self._noise)) if self._noise else 0.0
        return max(o.min_level, o.noise_factor * noise)

    def process(self, t: float, image: np.ndarray) -> Detection | None:
        image = self._crop(image).astype(np.int16)
        if self._prev is None:
            self._start(t, image)
            return Detection(t, 1.0, "start")
        o = self.o
        thr = self.threshold
        size, sign = self._cell_diff(image, self._prev)
        self._measure_noise(image, size)
        thr = self.threshold
        moved = size > thr / 2
        fraction = float((size > thr).mean())
        calm_before = self._prev_fraction < o.cut_fraction / 2

        # Per cell: movement episodes (for dating), reversals (live video, pointer trails).
        # A change happened between the two samples: dated at their middle, unless they
        # straddle a gap in the recording (nothing was there to change).
        mid = (self._prev_t + t) / 2 if t - self._prev_t <= 2 / o.sample_fps else t
        back = moved & (sign != self._dir) & (self._dir != 0) & (t - self._last_move <= o.reversal_s)
        self._trail[back & (t - self._last_rev > o.periodic_s)] = t
        self._last_rev[back] = t
        self._live_until[back] = t + o.live_hold_s
        fresh = moved & (self._prev_t - self._last_move >= o.settle_s)
        self._onset[fresh] = mid
        self._end[moved] = mid
        self._last_move[moved] = t
        self._dir[moved] = sign[moved]
        step = min(max(t - self._prev_t, 1e-3), 2 / o.sample_fps)  # a gap is not many samples
        decay = math.exp(-step / o.video_tau_s)
        self._rate = self._rate * decay + moved * (1 - decay)
        self._reversals = self._reversals * math.exp(-step / o.live_hold_s) + back
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
            self._ref, self._ref_t = image.copy(), t
            self._rate[:] = 0  # a new picture: what moved in the old one says nothing about it
            return self._report(*cut)

        # A slide change: cells settle on content that differs from the saved picture.
        # Video: cells that keep moving (still moving lately: a video that stopped is a picture
        # again) or went back and forth twice lately.
        video = ((self._rate >= o.video_rate) & (t - self._last_move <= o.live_hold_s)) | \
            (self._reversals >= 1 + math.exp(-1))
        self._live = live = _grow(self._live_until >= t, 1) | video_regions(video, o.video_margin)
        if live.mean() >= o.camera_share:  # a camera shot: what settles in it is no slide change
            return None
        settled = (t - self._last_move >= o.settle_s) & ~live
        differs = (self._cell_diff(image, self._ref)[0] > thr) & settled
        if not differs.any():
            return None
        new = np.zeros_like(differs)
        for group in components(differs):
            rows, cols = group
            if len(rows) < o.min_cells:
                old = t - self._last_move[rows, cols] >= o.absorb_s
                self._copy_cells(self._ref, image, (rows[old], cols[old]))
            elif self._pointer_trail(group):
                self._copy_cells(self._ref, image, group)
            else:
                new[rows, cols] = True
        if not new.any():
            return None
        # Dated by the cells that moved since the saved picture; a cell that only drifted (a
        # faint stroke in a dissolve, each step below the threshold) has no time of its own.
        moved_since = new & (self._end >= self._ref_t)
        when = float(np.median((self._onset[moved_since] + self._end[moved_since]) / 2)) \
            if moved_since.any() else t - o.settle_s
        self._ref, self._ref_t = image.copy(), t
        return self._report(when, float(new.mean()))

    def _pointer_trail(self, group: tuple[np.ndarray, np.ndarray]) -> bool:
        """True when cells near a pointer-sized settled change went and came back once, at
        about the time it moved: a pointer arriving at (or leaving) the place."""
        rows, cols = group
        o = self.o
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        if max(h, w) > o.pointer_cells:
            return False
        reach = max(o.trail_reach, h, w)
        r0, r1 = max(0, rows.min() - reach), rows.max() + reach + 1
        c0, c1 = max(0, cols.min() - reach), cols.max() + reach + 1
        when = float(np.median(self._onset[rows, cols]))
        near = np.abs(self._trail[r0:r1, c0:c1] - when) <= o.trail_s
        near[rows - r0, cols - c0] = False
        return int(near.sum()) * 2 >= len(rows)

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

    def _cell_diff(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per cell: the largest pixel difference, and the sign of the cell's mean difference."""
        parts = self._parts(a - b)
        return np.maximum.reduce([np.abs(p) for p in parts]), np.sign(sum(parts)).astype(np.int8)

    def _copy_cells(self, dst: np.ndarray, src: np.ndarray, cells: tuple[np.ndarray, np.ndarray]) -> None:
        b = self.o.block
        for r, c in zip(*cells):
            dst[r * b:(r + 1) * b, c * b:(c + 1) * b] = src[r * b:(r + 1) * b, c * b:(c + 1) * b]


def video_regions(video: np.ndarray, tile: int) -> np.ndarray:
    """The bounding boxes of groups of video cells, in tiles of `tile` cells, one tile wider:
    a webcam box or a video in a slide is one region, its still parts (bars, a wall) and its
    moving edges included. Grouped on the tile grid, so it stays cheap."""
    rows, cols = video.shape
    r, c = -(-rows // tile), -(-cols // tile)
    padded = np.zeros((r * tile, c * tile), bool)
    padded[:rows, :cols] = video
    tiles = padded.reshape(r, tile, c, tile).any(axis=(1, 3))
    region = np.zeros((r, c), bool)
    for rr, cc in components(tiles):
        region[max(0, rr.min() - 1):rr.max() + 2, max(0, cc.min() - 1):cc.max() + 2] = True
    return np.repeat(np.repeat(region, tile, axis=0), tile, axis=1)[:rows, :cols]


def _grow(cells: np.ndarray, reach: int) -> np.ndarray:
    """The cells and every cell within `reach` cells of them (a square neighbourhood)."""
    out = cells.copy()
    for _ in range(reach):
        rows = out.copy()
        rows[1:] |= out[:-1]
        rows[:-1] |= out[1:]
        out = rows.copy()
        out[:, 1:] |= rows[:, :-1]
        out[:, :-1] |= rows[:, 1:]
    return out


def components(cells: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 8-connected groups of true cells, each as (rows, cols) index arrays."""
    n_rows, n_cols = cells.shape
    seen = np.zeros_like(cells)
    groups = []
    for r0, c0 in zip(*np.nonzero(cells)):
        if seen[r0, c0]:
            continue
        group, stack = [], [(r0, c0)]
        seen[r0, c0] = True
        while stack:
            r, c = stack.pop()
            group.append((r, c))
            for rr in range(max(0, r - 1), min(n_rows, r + 2)):
                for cc in range(max(0, c - 1), min(n_cols, c + 2)):
                    if cells[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        rows, cols = zip(*group)
        groups.append((np.array(rows), np.array(cols)))
    return groups

def encode_jpeg(frame: av.VideoFrame, width: int | None = None) -> bytes:
    """JPEG bytes of a frame, scaled to `width` if given (PyAV's mjpeg encoder)."""
    w = width or frame.width
    h = max(2, round(frame.height * w / frame.width / 2) * 2)
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
        self.log_path = session_dir / FRAMES_LOG
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
    return list(_frames(session_dir))


def first_frame(session_dir: Path) -> FrameRecord | None:
    """The first record of frames.jsonl, reading no further (a list of sessions shows one
    thumbnail each; a day-long session's file holds thousands)."""
    return next(_frames(session_dir), None)


def _frames(session_dir: Path) -> Iterator[FrameRecord]:
    path = session_dir / FRAMES_LOG
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return
    root = session_dir.resolve()
    with file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = FrameRecord.from_json(line.decode("utf-8"))
            except (ValueError, TypeError, KeyError):
                where = "its last line is cut short" if not line.endswith(b"\n") else f"line {number} is unreadable"
                log.warning("frames.jsonl: %s; ignored", where)
                continue
            if not all(_inside(root, name) for name in (record.file, record.thumb)):
                log.warning("frames.jsonl: line %d names a file outside the session (%s); ignored", number, record.file)
                continue
            yield record


def _inside(root: Path, name: object) -> bool:
    """A record's picture must resolve inside the session dir: the export copies it and
    analysis moves it, so a path out of the session would reach the user's other files."""
    return isinstance(name, str) and not Path(name).is_absolute() and (root / name).resolve().is_relative_to(root)
