"""Offline scene detection split across processes: one slice of the timeline per core.

`cht analyze` spends most of its time decoding H.264, which one decoder does on one core.
The session's timeline is cut into as many slices as there are cores; each worker process
decodes its slice (crossing segment boundaries with one detector, as the live path does),
starting `WARM_UP_S` early so its detector knows the picture when its slice begins, and
running `TAIL_S` past the end so a change just before the cut is still confirmed. A worker
keeps only the detections dated inside its slice and writes their pictures itself; the
parent logs the records in time order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av

from cht.analyze.reader import open_decoder
from cht.analyze.scenes import FrameRecord, KeyframeWriter, SlideChangeDetector, grey
from cht.config import SceneOptions
from cht.session import Segment

log = logging.getLogger("cht.analyze")

WARM_UP_S = 10.0  # seconds decoded before a slice so the detector starts informed
TAIL_S = 5.0  # seconds decoded after a slice so late-settling changes are confirmed
MIN_SLICE_S = 60.0  # seconds: shorter timelines are not worth a second process


@dataclass(frozen=True)
class Piece:
    path: str
    global_start: float
    start: float  # file seconds
    end: float  # file seconds


@dataclass(frozen=True)
class Slice:
    pieces: tuple[Piece, ...]
    keep_from: float  # global seconds: detections dated from here...
    keep_to: float  # ...to here (exclusive) are this worker's
    first: bool  # the session's first slice keeps its "start" picture


def slices(session_dir: Path, segments: list[Segment], workers: int) -> list[Slice]:
    """Cut the recorded timeline into `workers` slices of about equal media time."""
    total = sum(s.duration for s in segments)
    if workers < 2 or total < workers * MIN_SLICE_S:
        return []
    out = []
    for k in range(workers):
        lo, hi = _at(segments, total * k / workers), _at(segments, total * (k + 1) / workers)
        keep_from = lo if k else float("-inf")
        keep_to = hi if k < workers - 1 else float("inf")
        pieces = []
        for seg in segments:
            start = max(0.0, (lo - WARM_UP_S) - seg.global_start) if k else 0.0
            end = min(seg.duration, hi + TAIL_S - seg.global_start) if k < workers - 1 else seg.duration
            if end > start and seg.global_end > lo - WARM_UP_S and seg.global_start < hi + TAIL_S:
                pieces.append(Piece(str(session_dir / seg.file), seg.global_start, start, end))
        out.append(Slice(tuple(pieces), keep_from, keep_to, k == 0))
    return out


def _at(segments: list[Segment], media_s: float) -> float:
    """The global time after `media_s` seconds of recorded media."""
    for seg in segments:
        if media_s <= seg.duration:
            return seg.global_start + media_s
        media_s -= seg.duration
    return segments[-1].global_end


def detect_slice(work: Slice, out_dir: str, options: SceneOptions) -> list[FrameRecord]:
    """Worker: scene detection over one slice; writes pictures, returns their records."""
    detector = SlideChangeDetector(options)
    writer = KeyframeWriter(Path(out_dir), options)
    records = []
    period = 1.0 / options.sample_fps
    for piece in work.pieces:
        with av.open(piece.path) as container:
            if not container.streams.video:
                continue
            stream = container.streams.video[0]
            decoder = open_decoder(stream)
            if piece.start > 0:
                container.seek(int(piece.start / stream.time_base), stream=stream, backward=True)
            next_t = float("-inf")
            done = False
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                try:
                    frames = decoder.decode(packet)
                except av.FFmpegError:  # a corrupt fragment: go on at the next keyframe
                    log.warning("%s: skipped a packet that does not decode", Path(piece.path).name)
                    continue
                for frame in frames:
                    if frame.pts is None:
                        continue
                    local = float(frame.pts * stream.time_base)
                    if local > piece.end:
                        done = True
                        break
                    if local < piece.start or local + 1e-6 < next_t:
                        continue
                    next_t = local + period
                    found = detector.process(piece.global_start + local, grey(frame, options.width))
                    if found and work.keep_from <= found.t < work.keep_to and (found.kind != "start" or work.first):
                        records.append(writer.pictures(frame, found))
                if done:
                    break
    return records


def detect_in_parallel(session_dir: Path, out_dir: Path, segments: list[Segment],
                       options: SceneOptions) -> list[FrameRecord] | None:
    """Scene records for the whole session, in time order; None when not worth splitting."""
    work = slices(session_dir, [s for s in segments if s.duration > 0], os.cpu_count() or 1)
    if not work:
        return None
    context = multiprocessing.get_context("spawn")  # no fork of a process that has threads
    with ProcessPoolExecutor(max_workers=len(work), mp_context=context) as pool:
        results = list(pool.map(detect_slice, work, [str(out_dir)] * len(work), [options] * len(work)))
    return sorted((r for part in results for r in part), key=lambda r: r.t)
