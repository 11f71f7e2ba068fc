"""Analysis and transcription beside a live recording: keyframes, waveform and transcript
from the segments as they grow. Shared by `cht record` (its own recorder) and
`cht record --attach` (the ingest service's recorder): neither the recorder nor this
knows the other is there; the files between them are the whole interface."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cht import events as ev
from cht.analyze.pipeline import Analyzer, clear_derived
from cht.config import SceneOptions
from cht.session import Manifest, Segment

if TYPE_CHECKING:
    from cht.transcribe.model import SpeechModel
    from cht.transcribe.worker import Transcriber

log = logging.getLogger("cht.lifecycle")


class LiveAnalysis:
    def __init__(self, session_dir: Path, bus: ev.EventBus, segments: Callable[[], list[Segment]], *,
                 scene_options: SceneOptions | None = None, speech: SpeechModel | None = None,
                 start_over: bool = False) -> None:
        self.session_dir = session_dir
        self.bus = bus
        self._segments = segments
        self._scene_options = scene_options
        self._speech = speech
        self._start_over = start_over  # analysis restarts from the first segment: clear old results
        self.analyzer: Analyzer | None = None
        self.transcriber: Transcriber | None = None

    def start(self) -> None:
        """If analysis cannot start, the recording goes on without it (a warning says so)."""
        try:
            if self._start_over:
                clear_derived(self.session_dir)
            self.analyzer = Analyzer(self.session_dir, self.session_dir, self.bus, self._segments,
                                     self._scene_options)
            if self._speech is not None:
                self._start_transcription(self.analyzer)
            self.analyzer.start()
        except OSError as exc:
            self.analyzer = None
            log.error("analysis could not start: %s", exc)
            self.bus.publish(ev.Warning(f"analysis is off for this recording: {exc.strerror or exc}"))

    def _start_transcription(self, analyzer: Analyzer) -> None:
        """The transcriber listens to the analyzer's PCM; a continued session's transcript
        goes on where it stopped."""
        from cht.transcribe.offline import resume_transcriber
        from cht.transcribe.worker import TranscribeOptions

        self.transcriber = resume_transcriber(self.session_dir, self._speech, self.bus, TranscribeOptions())
        analyzer.pcm_sinks.append(self.transcriber.feed)
        self.transcriber.start()

    @property
    def lag_s(self) -> float | None:
        return None if self.transcriber is None else round(self.transcriber.lag_s, 2)

    def abandon_transcription(self) -> None:
        """Stop transcribing what is queued: it is left for `cht transcribe`."""
        if self.transcriber is not None:
            self.transcriber.abandon()

    def capture(self) -> dict:
        """Save the picture shown now as a keyframe; RuntimeError says why it cannot."""
        if self.analyzer is None:
            raise RuntimeError("analysis is off for this recording (--no-analyze)")
        record = self.analyzer.capture_now()
        if record is None:
            raise RuntimeError("no picture decoded yet (an audio-only source, or too early)")
        return {"t": record.t, "file": record.file}

    def finish(self, manifest: Manifest) -> None:
        """Analyse what the segments still hold, transcribe what is queued (a second stop
        request cuts this short), then record what is missing for `cht transcribe`."""
        if self.analyzer is not None:
            try:
                self.analyzer.stop()
            except Exception:
                log.exception("analysis failed while finishing")
        if self.transcriber is None:
            return
        from cht.transcribe.offline import finish_index

        try:
            self.transcriber.stop()
            left = finish_index(self.session_dir, manifest)
        except Exception:
            log.exception("transcription failed while finishing")
            return
        if left:
            seconds = sum(b - a for a, b in left)
            self.bus.publish(ev.Warning(f"{seconds:.0f} s of audio are not transcribed yet: "
                                        f"run `cht transcribe {manifest.id}`"))
