"""The speaker stage: who spoke when, live. Speech regions (Silero VAD) are embedded with
Resemblyzer's GE2E encoder (numpy) and clustered online into labels S1, S2… that stay put
while the session grows; at the end the whole session is re-clustered and relabelled
consistently (`speakers.json`). Without the model's weights the stage cannot start: the
follower warns in one line naming the fix, and recording and transcript go on."""

from __future__ import annotations

import logging

from cht.analyze.reader import PcmChunk
from cht.errors import ChtError
from cht.speakers.encoder import shared
from cht.speakers.labeller import Labeller, recluster_session
from cht.speakers.regions import RegionFinder
from cht.stages.base import Stage, StageConfig, StageContext

log = logging.getLogger("cht.speakers")


class SpeakersStage(Stage):
    name = "speakers"
    consumes = frozenset({"pcm"})

    def __init__(self, context: StageContext, config: StageConfig) -> None:
        encoder = shared()  # a WeightsError here: the one-line warning, the stage stays off
        # start_over (an --append run, `cht follow`) re-reads the session from its start: what is
        # on disk is kept and re-read audio already embedded is skipped, so names survive
        self.root = context.out_dir
        self.labeller = Labeller(self.root, encoder)
        self.finder = RegionFinder()

    def on_pcm(self, chunk: PcmChunk) -> None:
        for region in self.finder.feed(chunk.t, chunk.samples):
            self.labeller.add(region)

    def finish(self) -> None:
        """The last region, then one re-clustering of the whole session."""
        for region in self.finder.flush():
            self.labeller.add(region)
        if self.labeller.turns:
            self.labeller.write()
            try:
                recluster_session(self.root)
            except ChtError as exc:
                log.warning("speakers not re-clustered: %s", exc)

    def status(self) -> dict:
        return {"speakers": len(set(self.labeller.labels))}
