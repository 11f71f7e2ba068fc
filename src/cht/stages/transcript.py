"""The transcript stage: speech becomes `transcript.jsonl` through the process's one
speech engine; a continued session's transcript goes on where it stopped."""

from __future__ import annotations

import logging

from cht import events as ev
from cht.analyze.reader import PcmChunk
from cht.stages.base import Stage, StageConfig, StageContext
from cht.transcribe.offline import finish_index, resume_transcriber
from cht.transcribe.worker import TranscribeOptions

log = logging.getLogger("cht.transcribe")


class TranscriptStage(Stage):
    name = "transcript"
    consumes = frozenset({"pcm"})

    def __init__(self, context: StageContext, config: StageConfig) -> None:
        if config.engine is None:
            raise ValueError("the transcript stage needs a speech engine")
        self.context = context
        self.name_on_disk = config.transcript_name
        options = config.transcribe or TranscribeOptions()
        self.transcriber = resume_transcriber(context.out_dir, config.engine, context.bus, options,
                                              config.transcript_name)
        self._registered = False  # with the engine, on the first audio: a recording that never starts leaves no trace
        self.left: list[tuple[float, float]] = []  # what is still missing after finish()

    def on_pcm(self, chunk: PcmChunk) -> None:
        if not self._registered:
            self._registered = True
            self.transcriber.start()
        self.transcriber.feed(chunk)

    def finish(self) -> None:
        """Transcribe what is queued (a second stop request cuts this short), then record
        what is missing for `cht transcribe`."""
        self.transcriber.stop()
        manifest = self.context.manifest()
        self.left = finish_index(self.context.out_dir, manifest, self.name_on_disk)
        if self.left and self.context.out_dir == self.context.session_dir:
            seconds = sum(b - a for a, b in self.left)
            self.context.bus.publish(ev.Warning(f"{seconds:.0f} s of audio are not transcribed yet: "
                                                f"run `cht transcribe {manifest.id}`"))

    def abandon(self) -> None:
        self.transcriber.abandon()

    def status(self) -> dict:
        return {"transcript_lag": round(self.transcriber.lag_s, 2)}
