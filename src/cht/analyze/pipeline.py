"""Run analysis over a session's segments: live beside the recorder, or offline.

One `Analyzer` decodes each segment once (`reader`), hands video samples to the scene
detector and PCM to the waveform (and to any other PCM sink, such as a transcriber), and
publishes what it finds on the bus. Live, a thread polls the growing segments (`step()`);
offline, `run()` reads the finished ones as fast as they decode: audio through the same
decoder in a thread, video split across processes (`parallel`) when the session is long.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

from cht import events as ev
from cht.analyze.audio import Waveform
from cht.analyze.parallel import detect_in_parallel
from cht.analyze.reader import PcmChunk, SegmentDecoder, VideoSample
from cht.analyze.scenes import Detection, FrameRecord, KeyframeWriter, SlideChangeDetector, grey, read_frames
from cht.config import SceneOptions
from cht.session import Segment

log = logging.getLogger("cht.analyze")

PcmSink = Callable[[PcmChunk], None]


class Analyzer:
    def __init__(
        self,
        session_dir: Path,
        out_dir: Path,
        bus: ev.EventBus,
        segments: Callable[[], list[Segment]],
        options: SceneOptions | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.session_dir = session_dir
        self.options = options or SceneOptions()
        self.bus = bus
        self._segments = segments
        self._poll_s = poll_s
        self._out_dir = out_dir
        self._detector = SlideChangeDetector(self.options)
        self._writer = KeyframeWriter(out_dir, self.options)
        self._waveform = Waveform(out_dir / "audio")
        self._decoders: dict[str, SegmentDecoder] = {}
        self._finished: set[str] = set()
        self._latest: VideoSample | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pcm_sinks: list[PcmSink] = []

    # -- live --

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cht-analyze", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following; analyse whatever the segments still hold; write the JSON files."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.step(final=True)
        self._waveform.finish()

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.step()
            except Exception:  # analysis must never take the recording down
                log.exception("analysis step failed")

    # -- offline --

    def run(self, progress: Callable[[float], None] | None = None) -> None:
        """Analyse finished segments as fast as possible: audio in a thread of its own,
        video in one process per core when the session is long enough (`parallel`)."""
        failures: list[BaseException] = []
        done = [0.0]
        lock = threading.Lock()

        def report(t: float) -> None:
            with lock:
                if progress and t >= done[0] + 1.0:
                    done[0] = t
                    progress(t)

        def audio_pass() -> None:
            try:
                self._run_kind("audio", report)
            except BaseException as exc:  # re-raised in the caller's thread
                failures.append(exc)

        audio = threading.Thread(target=audio_pass, name="cht-analyze-audio")
        audio.start()
        segments = self._segments()
        records = detect_in_parallel(self.session_dir, self._out_dir, segments, self.options)
        if records is None:
            self._run_kind("video", report)
        else:
            for record in records:
                self._publish_frame(self._writer.append(record))
        audio.join()
        if failures:
            raise failures[0]
        self._waveform.finish()

    def _run_kind(self, kind: str, report: Callable[[float], None]) -> None:
        for segment in self._segments():
            decoder = SegmentDecoder(self.session_dir / segment.file, segment.global_start,
                                     video_fps=self.options.sample_fps, kinds=(kind,))
            for item in itertools.chain(decoder.poll(), decoder.finish()):  # streamed: memory stays flat
                self._handle(item)
                report(item.t)
            report(segment.global_end)

    # -- both --

    def step(self, final: bool = False) -> None:
        segments = self._segments()
        for i, segment in enumerate(segments):
            closed = final or i < len(segments) - 1
            self._step_segment(segment, final=closed)

    def capture_now(self) -> FrameRecord | None:
        """Save the latest decoded picture as a manual keyframe."""
        with self._lock:
            sample = self._latest
            if sample is None:
                return None
            record = self._writer.save(sample.frame, Detection(sample.t, 0.0, "manual"))
        self._publish_frame(record)
        return record

    def _step_segment(self, segment: Segment, final: bool) -> None:
        if segment.file in self._finished:
            return
        decoder = self._decoders.get(segment.file)
        if decoder is None:
            path = self.session_dir / segment.file
            decoder = self._decoders[segment.file] = SegmentDecoder(
                path, segment.global_start, video_fps=self.options.sample_fps
            )
        for item in decoder.poll():
            self._handle(item)
        if final:
            for item in decoder.finish():
                self._handle(item)
            self._finished.add(segment.file)
            del self._decoders[segment.file]

    def _handle(self, item: VideoSample | PcmChunk) -> None:
        if isinstance(item, VideoSample):
            with self._lock:
                self._latest = item
                detection = self._detector.process(item.t, grey(item.frame, self.options.width))
                record = self._writer.save(item.frame, detection) if detection else None
            if record:
                self._publish_frame(record)
            return
        for spp, first, data in self._waveform.add(item.t, item.samples):
            self.bus.publish(ev.WaveformUpdated(spp, first, data))
        for sink in self.pcm_sinks:
            sink(item)

    def _publish_frame(self, record: FrameRecord) -> None:
        self.bus.publish(ev.SceneDetected(record.t, record.file, record.thumb, record.score, record.kind))


DERIVED = ("frames", "frames.jsonl", "audio")


def clear_derived(session_dir: Path, keep_into: Path | None = None) -> None:
    """Remove what analysis derives, keeping the user's manual captures: their records and
    pictures stay (or move into `keep_into`, the fresh results, merged in time order)."""
    manual = [r for r in read_frames(session_dir) if r.kind == "manual"]
    target = keep_into or session_dir
    stash = session_dir / ".manual.tmp"
    shutil.rmtree(stash, ignore_errors=True)
    stash.mkdir()
    for record in manual:
        for name in (record.file, record.thumb):
            if (session_dir / name).exists():
                os.replace(session_dir / name, stash / Path(name).name)
    for name in DERIVED:
        path = session_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if manual:
        (target / "frames").mkdir(parents=True, exist_ok=True)
        for picture in stash.iterdir():
            os.replace(picture, target / "frames" / picture.name)
        records = sorted(read_frames(target) + manual, key=lambda r: r.t)
        (target / "frames.jsonl").write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    shutil.rmtree(stash, ignore_errors=True)


def analyze_offline(session_dir: Path, segments: list[Segment], bus: ev.EventBus,
                    progress: Callable[[float], None] | None = None,
                    options: SceneOptions | None = None) -> list[FrameRecord]:
    """Re-run analysis on a finished session, replacing its derived files only at the end
    (an interrupted run leaves the previous results as they were); manual captures stay."""
    work = session_dir / ".analyze.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    Analyzer(session_dir, work, bus, lambda: segments, options).run(progress)
    clear_derived(session_dir, keep_into=work)
    for name in DERIVED:
        if (work / name).exists():
            os.replace(work / name, session_dir / name)
    shutil.rmtree(work, ignore_errors=True)
    return read_frames(session_dir)
