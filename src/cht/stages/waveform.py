"""The waveform stage: audiowaveform peaks at three zoom levels (`audio/`)."""

from __future__ import annotations

from cht import events as ev
from cht.analyze.audio import Waveform
from cht.analyze.pipeline import clear_derived
from cht.analyze.reader import PcmChunk
from cht.stages.base import Stage, StageConfig, StageContext

FILES = ("audio",)


class WaveformStage(Stage):
    name = "waveform"
    consumes = frozenset({"pcm"})

    def __init__(self, context: StageContext, config: StageConfig) -> None:
        if context.start_over:
            clear_derived(context.out_dir, names=FILES)
        self.bus = context.bus
        self._waveform = Waveform(context.out_dir / "audio")

    def on_pcm(self, chunk: PcmChunk) -> None:
        for spp, first, data in self._waveform.add(chunk.t, chunk.samples):
            self.bus.publish(ev.WaveformUpdated(spp, first, data))

    def finish(self) -> None:
        self._waveform.finish()
