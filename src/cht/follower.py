"""The follower: one reader of a session's media, feeding every stage.

It follows any session dir — the manifest's segments as they grow, complete fragments only
(`analyze.reader`) — decodes each segment once, and hands typed samples to the stages that
consume them: video pictures (at the highest rate any stage wants) and 16 kHz PCM. Live,
offline and attached runs are this one loop with different ends: `start()`…`finish()` follows
until told the recording stopped; `run_to_end()` reads finished files as fast as they decode.

A stage that raises on a sample is logged and warned about, and that sample is skipped; one
that keeps raising (`MAX_STAGE_ERRORS`) is switched off for this session. The others and the
recording go on. A fragment that does not decode is skipped by the reader with a warning.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from cht import events as ev
from cht.analyze.reader import PCM_RATE, PcmChunk, SegmentDecoder, VideoSample
from cht.session import Segment
from cht.sessionlog import spawn
from cht.stages import Stage

log = logging.getLogger("cht.follow")

POLL_S = 0.2  # seconds between looks at the segments: a fragment (0.5 s) waits 0.1 s on average
JOIN_PCM_S = 2.0  # decoded audio is handed on in pieces of up to this long, not frame by frame
MAX_STAGE_ERRORS = 3  # a stage that failed this often is switched off for the session


class Follower:
    def __init__(self, session_dir: Path, bus: ev.EventBus, stages: list[Stage],
                 segments: Callable[[], list[Segment]], *, poll_s: float = POLL_S) -> None:
        self.session_dir = session_dir
        self.bus = bus
        self.stages = list(stages)
        self._segments = segments
        self._poll_s = poll_s
        self._decoders: dict[str, SegmentDecoder] = {}
        self._finished_files: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step_lock = threading.Lock()
        self._done = False
        self._errors: dict[str, int] = {}

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    # -- live: until told the recording stopped --

    def start(self) -> None:
        if not self.stages:
            return
        self._thread = spawn(self._loop, name="cht-follow")

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.step()
            except Exception:  # following must never take the recording down
                log.exception("follower step failed")

    def finish(self) -> None:
        """The recording has stopped: read what the segments still hold, then finish every
        stage (the transcript drains its queue). Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._done:
            return
        self._done = True
        try:
            self.step(final=True)
        except Exception:
            log.exception("follower failed while finishing")
        for stage in list(self.stages):
            self._call(stage, stage.finish)

    def abandon(self) -> None:
        """A second stop request: stages leave what is unfinished for a later run."""
        for stage in list(self.stages):
            self._call(stage, stage.abandon)

    # -- offline: to the end of the files --

    def run_to_end(self, progress: Callable[[float], None] | None = None) -> None:
        """Offline: a stage's failure is the command's error, not a warning."""
        self._progress, self._strict = progress, True
        self.step(final=True)
        self._done = True
        for stage in self.stages:
            stage.finish()

    _progress: Callable[[float], None] | None = None
    _strict = False

    # -- both --

    def step(self, final: bool = False) -> None:
        """Decode what is new in every segment; `final`: the segments are complete."""
        with self._step_lock:
            segments = self._segments()
            for i, segment in enumerate(segments):
                if not self.stages:
                    return
                self._step_segment(segment, final=final or i < len(segments) - 1)

    def status(self) -> dict:
        merged: dict = {"stages": [s.name for s in self.stages]}
        for stage in self.stages:
            merged.update(stage.status())
        return merged

    def _step_segment(self, segment: Segment, final: bool) -> None:
        if segment.file in self._finished_files:
            return
        decoder = self._decoders.get(segment.file)
        if decoder is None:
            kinds = tuple(k for k, want in (("video", "video"), ("audio", "pcm"))
                          if any(want in s.consumes for s in self.stages))
            fps = max((s.video_fps for s in self.stages), default=0.0) or 1.0
            decoder = self._decoders[segment.file] = SegmentDecoder(
                self.session_dir / segment.file, segment.global_start, video_fps=fps, kinds=kinds,
                threads=0 if self._strict else 1)  # offline: every core decodes
        for item in joined_pcm(decoder.poll()):
            self._hand_on(item)
        if final:
            for item in joined_pcm(decoder.finish()):
                self._hand_on(item)
            self._finished_files.add(segment.file)
            del self._decoders[segment.file]
            if self._progress:
                self._progress(segment.global_end)

    def _hand_on(self, item: VideoSample | PcmChunk) -> None:
        video = isinstance(item, VideoSample)
        for stage in list(self.stages):
            if video and "video" in stage.consumes:
                self._call(stage, stage.on_video, item)
            elif not video and "pcm" in stage.consumes:
                self._call(stage, stage.on_pcm, item)
        if self._progress and not video:
            self._progress(item.t)

    def _call(self, stage: Stage, method, *args) -> None:
        try:
            method(*args)
        except Exception as exc:
            if self._strict:
                raise
            errors = self._errors[stage.name] = self._errors.get(stage.name, 0) + 1
            trace = not isinstance(exc, OSError)  # a disk's error is its message; anything else, a bug's trace
            if errors < MAX_STAGE_ERRORS:
                log.error("the %s stage failed on a sample (skipped): %s", stage.name, exc, exc_info=trace)
                self.bus.publish(ev.Warning(f"{stage.name}: a sample was skipped after an error: {exc}"))
                return
            log.error("the %s stage failed %d times: switched off for this session: %s", stage.name, errors, exc,
                      exc_info=trace)
            if stage in self.stages:
                self.stages.remove(stage)
            self.bus.publish(ev.Warning(f"{stage.name} is off for this session after {errors} errors: {exc}"))


def joined_pcm(items: Iterable[VideoSample | PcmChunk], max_s: float = JOIN_PCM_S) -> Iterator[VideoSample | PcmChunk]:
    """The decoder's items with its audio frames (21 ms of AAC each) joined while they follow
    each other: a fragment's audio reaches a stage at once. Fed frame by frame, the transcript's
    step fired on a fragment's first frame, so it decoded audio 0.69 s old (median) where 0.21 s
    was there, and one room through `cht ingest` committed words 0.5 s later (bench/README,
    Rooms). Pictures pass as they come; audio follows at the end of its run of frames."""
    held: list[PcmChunk] = []
    end = 0.0
    for item in items:
        if isinstance(item, PcmChunk):
            if held and (abs(item.t - end) > 1e-3 or end - held[0].t >= max_s):
                yield _join(held)
                held = []
            held.append(item)
            end = item.t + len(item.samples) / PCM_RATE
        else:
            yield item
    if held:
        yield _join(held)


def _join(pieces: list[PcmChunk]) -> PcmChunk:
    return pieces[0] if len(pieces) == 1 else PcmChunk(pieces[0].t, np.concatenate([p.samples for p in pieces]))
