"""The scenes stage: slide and scene changes become keyframes (`frames/`, `frames.jsonl`)."""

from __future__ import annotations

import threading

from cht import events as ev
from cht.analyze.pipeline import clear_derived
from cht.analyze.reader import VideoSample
from cht.analyze.scenes import FRAMES_LOG, Detection, FrameRecord, KeyframeWriter, SlideChangeDetector, grey
from cht.stages.base import Stage, StageConfig, StageContext

FILES = ("frames", FRAMES_LOG)


class ScenesStage(Stage):
    name = "scenes"
    consumes = frozenset({"video"})

    def __init__(self, context: StageContext, config: StageConfig) -> None:
        if context.start_over:
            clear_derived(context.out_dir, names=FILES)  # manual captures stay
        self.options = config.scenes
        self.video_fps = self.options.sample_fps
        self.bus = context.bus
        self._detector = SlideChangeDetector(self.options)
        self._writer = KeyframeWriter(context.out_dir, self.options)
        self._latest: VideoSample | None = None
        self._lock = threading.Lock()  # a capture comes from another thread

    def on_video(self, sample: VideoSample) -> None:
        with self._lock:
            self._latest = sample
            detection = self._detector.process(sample.t, grey(sample.frame, self.options.width))
            record = self._writer.save(sample.frame, detection) if detection else None
        if record is not None:
            self._publish(record)

    def capture(self) -> FrameRecord | None:
        """Save the latest decoded picture as a manual keyframe (None: no picture yet)."""
        with self._lock:
            sample = self._latest
            if sample is None:
                return None
            record = self._writer.save(sample.frame, Detection(sample.t, 0.0, "manual"))
        self._publish(record)
        return record

    def _publish(self, record: FrameRecord) -> None:
        self.bus.publish(ev.SceneDetected(record.t, record.file, record.thumb, record.score, record.kind))
