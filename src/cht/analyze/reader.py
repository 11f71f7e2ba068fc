"""Follow a session's segments as they grow and decode what analysis needs, once.

Each segment is read fragment by fragment (only complete fragments, see `media.fmp4`): the
init segment plus the new fragments form a small MP4 that PyAV demuxes, and the packets go
to decoders that live as long as the segment, so a fragment that starts mid-GOP decodes
fine. Video frames are handed on at `video_fps` at most (the rest are decoded, as H.264
needs, but never converted); audio is resampled to 16 kHz mono int16. Everything carries
global time: the segment's `global_start` plus the packet's time in the file.

A fragment that fails to decode is skipped with a warning and the decoders restart at the
next keyframe; nothing here can stop the recording, which only writes the files.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from cht.media.fmp4 import Fmp4Scan

log = logging.getLogger("cht.analyze")

PCM_RATE = 16_000


@dataclass
class VideoSample:
    t: float  # global seconds
    frame: av.VideoFrame  # full resolution, as decoded


@dataclass
class PcmChunk:
    t: float  # global seconds of the first sample
    samples: np.ndarray  # int16, mono, PCM_RATE


def open_decoder(stream, threads: int = 1) -> av.CodecContext:
    """A decoder of its own for a demuxed stream, set up the way analysis needs it: one
    thread live (light beside the recorder), every core offline (the same frames, sooner)."""
    template = stream.codec_context
    ctx = av.CodecContext.create(template.name, "r")
    ctx.extradata = template.extradata
    ctx.thread_count = threads
    if threads != 1:
        ctx.thread_type = "FRAME"
    if stream.type == "video":
        # Only a few frames a second are looked at: skip the pictures no other picture refers
        # to (B-frames), the deblocking filter and exactness the eye cannot see; this halves
        # the decoding.
        ctx.skip_frame = "NONREF"
        ctx.options = {"skip_loop_filter": "all", "flags2": "+fast"}
    if stream.type == "audio":
        ctx.sample_rate = template.sample_rate
        ctx.layout = template.layout
    return ctx


class SegmentDecoder:
    """Incrementally decodes one segment file; `poll()` yields what new fragments hold."""

    def __init__(self, path: Path, global_start: float, *, video_fps: float, threads: int = 1,
                 kinds: tuple[str, ...] = ("video", "audio")) -> None:
        self.path = path
        self.kinds = kinds
        self.threads = threads  # video decoding threads (0: one per core)
        self.global_start = global_start
        self._scan = Fmp4Scan(path)
        self._init: bytes | None = None
        self._read_upto = 0
        self._decoders: dict[int, tuple[av.CodecContext, str, object]] = {}
        self._resampler: av.AudioResampler | None = None
        self._audio_next: float | None = None  # global time of the next PCM sample
        self._video_period = 1.0 / video_fps
        self._next_video_t = float("-inf")
        self._last_video: tuple[float, float] | None = None  # (time, interval) of the last frame

    def poll(self) -> Iterator[VideoSample | PcmChunk]:
        scan = self._scan.update()
        if not scan.has_moov or scan.complete_bytes <= max(self._read_upto, scan.init_end):
            return
        with open(self.path, "rb") as f:
            if self._init is None:
                self._init = f.read(scan.init_end)
                self._read_upto = scan.init_end
            f.seek(self._read_upto)
            chunk = f.read(scan.complete_bytes - self._read_upto)
        self._read_upto = scan.complete_bytes
        try:
            yield from self._decode(self._init + chunk)
        except av.FFmpegError as exc:
            log.warning("%s: skipped a fragment that does not decode (%s)", self.path.name, exc)
            self._decoders.clear()  # start again at the next keyframe

    def finish(self) -> Iterator[VideoSample | PcmChunk]:
        """Drain the decoders at the end of the segment."""
        for ctx, kind, time_base in list(self._decoders.values()):
            try:
                frames = ctx.decode(None)
            except av.FFmpegError:
                continue
            for frame in frames:
                yield from self._emit(frame, kind, time_base)
        self._decoders.clear()

    def _decode(self, data: bytes) -> Iterator[VideoSample | PcmChunk]:
        with av.open(io.BytesIO(data), format="mp4") as container:
            for packet in container.demux():
                if packet.size == 0 or packet.stream.type not in self.kinds:
                    continue
                ctx, kind, time_base = self._decoder_for(packet.stream)
                for frame in ctx.decode(packet):
                    yield from self._emit(frame, kind, time_base)

    def _decoder_for(self, stream) -> tuple[av.CodecContext, str, object]:
        entry = self._decoders.get(stream.index)
        if entry is None:
            entry = (open_decoder(stream, self.threads if stream.type == "video" else 1), stream.type,
                     stream.time_base)
            self._decoders[stream.index] = entry
        return entry

    def _check_continuity(self, t: float) -> None:
        """Warn about video missing inside a segment (a fragment that did not decode)."""
        if self._last_video is None:
            self._last_video = (t, 0.0)
            return
        last, spacing = self._last_video
        step = t - last
        if spacing and step > max(0.2, 4 * spacing):
            log.warning("%s: no decodable video from %.3f to %.3f s (global): a corrupt fragment was skipped",
                        self.path.name, last, t)
        else:
            spacing = step  # the usual distance between frames
        self._last_video = (t, spacing)

    def _emit(self, frame, kind: str, time_base) -> Iterator[VideoSample | PcmChunk]:
        if frame.pts is None:
            return
        t = self.global_start + float(frame.pts * time_base)
        if kind == "video":
            self._check_continuity(t)
            if t + 1e-6 >= self._next_video_t:
                self._next_video_t = t + self._video_period
                yield VideoSample(t, frame)
            return
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_RATE)
            self._audio_next = t
        for out in self._resampler.resample(frame):
            samples = out.to_ndarray().reshape(-1)
            yield PcmChunk(self._audio_next, samples)
            self._audio_next += len(samples) / PCM_RATE
