"""Speaker labels: speaker error and CPU on real voices (jfk.flac and beckett.wav taking turns,
tests/dialog.py), through the speaker stage exactly as the follower feeds it.

Speaker error: the share of true speech time whose label is wrong after the best mapping of
labels to speakers (unlabelled speech counts as wrong), live (before the stage's finish) and
after the re-clustering at stop. CPU: process time of the stage (VAD + embeddings + clustering
+ writing speakers.json) per hour of audio, and as a share of one core in real time.

    .venv/bin/python bench/speakers.py [--turns 8 12 24] [--cpu-minutes 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cht import events as ev  # noqa: E402
from cht.analyze.reader import PcmChunk  # noqa: E402
from cht.session import Manifest  # noqa: E402
from cht.speakers import store  # noqa: E402
from cht.stages import StageConfig, StageContext  # noqa: E402
from cht.stages.speakers import SpeakersStage  # noqa: E402
from dialog import dialog, monologue, speaker_error  # noqa: E402
from speech import RATE  # noqa: E402

CHUNK = RATE // 10


def run(pcm, root: Path):
    """(live map, final map, CPU seconds) of one pass of the stage over `pcm`."""
    root.mkdir(parents=True)
    context = StageContext("bench", root, root, ev.EventBus(), lambda: Manifest("bench", "bench", "recording"))
    stage = SpeakersStage(context, StageConfig())
    began = time.process_time()
    for i in range(0, len(pcm), CHUNK):
        stage.on_pcm(PcmChunk(i / RATE, pcm[i:i + CHUNK]))
    stage.labeller.write()  # the online labels so far (live, speakers.json is rewritten every 2 s)
    live = store.read(root)
    stage.finish()
    return live, store.read(root), time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[8, 12, 24])
    parser.add_argument("--cpu-minutes", type=float, default=10.0, help="audio for the CPU figure")
    args = parser.parse_args()
    print("| audio | turns | audio s | labels live | error live | labels at stop | error at stop |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(f"dialog jfk/beckett", n, *dialog(n)) for n in args.turns]
        cases.append(("jfk alone", 0, *monologue(60)))
        for k, (what, turns, pcm, truth) in enumerate(cases):
            live, final, _ = run(pcm, Path(tmp) / f"c{k}")
            print(f"| {what} | {turns or '-'} | {len(pcm) / RATE:.0f} | {len(live.speakers)} | "
                  f"{speaker_error(truth, live.turns):.1%} | {len(final.speakers)} | {speaker_error(truth, final.turns):.1%} |")
        turns = 8
        while dialog(turns)[0].size < args.cpu_minutes * 60 * RATE:
            turns *= 2
        pcm, truth = dialog(turns)
        live, final, cpu = run(pcm, Path(tmp) / "cpu")
        seconds = len(pcm) / RATE
        print()
        print(f"CPU: {cpu:.1f} s for {seconds / 60:.1f} min of dialog ({turns} turns): "
              f"{cpu / seconds * 3600:.0f} s per hour of audio, {cpu / seconds:.2%} of one core; "
              f"error live {speaker_error(truth, live.turns):.1%}, at stop {speaker_error(truth, final.turns):.1%}, "
              f"{len(final.speakers)} label(s)")


if __name__ == "__main__":
    main()
