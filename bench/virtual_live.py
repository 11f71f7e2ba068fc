"""Live transcription on a virtual clock: policy comparisons free of the host's speed.

    python bench/virtual_live.py [--programmes voiced,lecture] [--phases 0,0.25] [--offsets 0,0.013] [--step 0.5] [--cost-scale 0.1] [base] [chunk-ends] agreement.MATURE_S=1 ...

A live run (`bench/transcribe.py`) moves by 0.3-0.7 s of median and 1-2 points of WER
between runs of the same code: the host's speed changes by half within an hour here, and
when a step lands against the audio decides what it hears. This runs the real `Transcriber`
and the real model, one job at a time in this thread, but time is simulated: the audio's
0.5 s fragments arrive at their times on the clock, and a job (a step, a final chunk) takes
`STEP_COST_S` or `FINAL_COST_S` for its window (`cost`), whatever it took on the host. So a
run is a pure function of the code, the audio and the CPU: two variants compared hear the same
audio at the same steps until their policies differ, and a figure measured here is the same on
any host with the same CPU (CTranslate2's int8 kernels differ by instruction set and read a
few words differently: on the espeak lecture at phase 0 the landed code's p95 was 4.75 s on the
host of the twentieth pass and 3.95 s on the twenty-first's, an Intel Xeon with AVX-512).
`--phases` shifts the fragments against the speech (0.25: the first fragment is 0.25 s), so a comparison is
made over more than one set of step times. `--offsets` delays the whole audio by that much silence
(0.013: 13 ms): chunk ends, which no phase moves, then hear other mel frames too, and read a
few words differently (the espeak lecture: 11.7 % at 0, 13.4 % at 0.013 s, 12.7 % at 0.027 s), so a
comparison between policies is made over offsets as well. A summary per programme and variant
follows the table: means over every phase and offset. `--commit-delay S` runs the live variants
as `cht record --commit-delay S` would; `--step S` steps every S s; `--cost-scale 0.1` makes
every job take a tenth of its time here (a decoder ten times faster: an H200 decodes a 10 s
window in about 50 ms, bench/cuda.py), to ask what faster hardware would change. Each variant
is `module.NAME=value` (several joined by `+`) as in `bench/transcribe_knobs.py`, `base`, or
`chunk-ends` (no steps: the policy before streaming commit).

Committed latency: the clock when a line holding the word is written minus the word's end.
The cost table is this 2-core host's (bench/README.md, fourteenth pass: steps in 6/10/15 s
windows took 0.42/0.85/1.27 s at beam 3); finals are greedy or beam 3 in their window.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import jiwer
import numpy as np

import transcribe as bench
import transcribe_knobs as knobs
from cht import events as ev
from cht.analyze.reader import PcmChunk
from cht.config import RecordOptions
from cht.transcribe import worker
from cht.transcribe.chunker import RATE
from cht.transcribe.engine import SpeechEngine, _Batch
from cht.transcribe.model import SpeechModel, default_model_dir, window_s
from cht.transcribe.store import TranscriptStore
from cht.transcribe.worker import Transcriber

STEP_COST_S = {6.0: 0.42, 10.0: 0.85, 15.0: 1.27, 20.0: 1.7, 30.0: 2.6}  # a step, by window
FINAL_COST_S = {10.0: 0.6, 15.0: 1.0, 20.0: 1.4, 30.0: 2.2}  # a final at beam 3, by window
GREEDY = 0.7  # a greedy final's share of that
BATCH_MATE = 0.5  # each more window in one call costs this share of the first


class Clock:
    now = 0.0

    def monotonic(self) -> float:
        return self.now


def cost(job) -> float:
    if isinstance(job, _Batch):
        speech = [chunk for _, chunk in job.items if chunk.speech]
        if not speech:
            return 0.0
        first = FINAL_COST_S[window_s(speech[0].seconds)] * (GREEDY if job.beam_size == 1 else 1.0)
        return first * (1 + BATCH_MATE * (len(speech) - 1))
    first = STEP_COST_S[window_s(job.items[0][1].seconds, True)]
    return first * (1 + BATCH_MATE * (len(job.items) - 1))


def delayed(audio: np.ndarray, reference: list[dict], offset: float):
    """The audio after `offset` s of silence, and the reference words at their new times."""
    pad = np.zeros(round(offset * RATE), dtype=audio.dtype)
    moved = [{**w, "start": w["start"] + offset, "end": w["end"] + offset} for w in reference]
    return np.concatenate([pad, audio]), moved


def run(engine: SpeechEngine, audio: np.ndarray, phase: float, kind: str = "live", commit_delay: float = 0.0,
        step_s: float | None = None, cost_scale: float = 1.0):
    """Feed the programme on the clock; (clock time, final event) pairs and the lines. The
    commit delay and `step_s` (None: cht's) apply to live runs only; every job's time on the
    clock is `cost` times `cost_scale`."""
    clock = Clock()
    real_time, worker.time = worker.time, SimpleNamespace(monotonic=clock.monotonic)
    engine._thread = threading.current_thread()  # no engine thread: jobs run here, on the clock
    bus = ev.EventBus()
    seen: list[tuple[float, ev.TranscriptSegments]] = []
    bus.subscribe(lambda e: seen.append((clock.now, e)) if isinstance(e, ev.TranscriptSegments) and e.final else None)
    pcm = (audio * 32767).astype(np.int16)
    step = round(RecordOptions().fragment_s * RATE)
    cuts = [0] + list(range(round(phase * RATE) or step, len(pcm), step)) + [len(pcm)]
    tmp = Path(tempfile.mkdtemp())
    try:
        options = bench.options(kind, "en")
        if options.step_s is not None:  # live: steps, so a delay and a step time
            options = replace(options, commit_delay_s=commit_delay, step_s=step_s or options.step_s)
        transcriber = Transcriber(engine, TranscriptStore(tmp), bus, options)
        transcriber.start()
        held: list[tuple] = []  # the job's results (method, args, kwargs), handed back when its time is up
        transcriber.draft_done = lambda *a, **k: held.append((Transcriber.draft_done, a, k))
        transcriber.complete = lambda *a, **k: held.append((Transcriber.complete, a, k))
        done_at = None

        def start_job() -> float | None:
            with engine.cond:
                job = engine._next_job()
            if job is None:
                return None
            (engine._run_batch if isinstance(job, _Batch) else engine._run_steps)(job)
            return clock.now + cost_scale * cost(job)

        def hand_back() -> None:
            for method, args, kwargs in held:
                method(transcriber, *args, **kwargs)
            held.clear()

        pieces = list(zip(cuts, cuts[1:]))
        i = 0
        while i < len(pieces) or done_at is not None:
            feed_at = pieces[i][1] / RATE if i < len(pieces) else float("inf")
            if done_at is not None and done_at <= feed_at:
                clock.now = done_at
                hand_back()
                done_at = start_job()
                continue
            a, b = pieces[i]
            clock.now = feed_at
            transcriber.feed(PcmChunk(a / RATE, pcm[a:b]))
            i += 1
            if i == len(pieces):
                transcriber.flush()
            if done_at is None:
                done_at = start_job()
        lines = TranscriptStore(tmp).read()
    finally:
        worker.time = real_time
        engine._thread = None
        shutil.rmtree(tmp, ignore_errors=True)
    return seen, lines, transcriber


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programmes", default="voiced,lecture")
    parser.add_argument("--phases", default="0,0.25")
    parser.add_argument("--offsets", default="0", help="seconds of silence before the audio, comma-separated")
    parser.add_argument("--commit-delay", type=float, default=0.0, help="live variants: `--commit-delay` of cht record")
    parser.add_argument("--step", type=float, help="live variants: seconds between steps (default: cht's)")
    parser.add_argument("--cost-scale", type=float, default=1.0,
                        help="every job's time on the clock times this (0.1: a decoder ten times this host's speed)")
    parser.add_argument("variants", nargs="+")
    opts = parser.parse_args()
    offsets = [float(o) for o in opts.offsets.split(",")]
    phases = [float(p) for p in opts.phases.split(",")]
    variants = [(spec, [] if spec == "chunk-ends" else knobs.knob(spec)) for spec in opts.variants]
    model_dir = default_model_dir(Path(tempfile.gettempdir()) / "cht-bench-cache")
    engine = SpeechEngine(SpeechModel(model_dir))
    print("| speech | offset s | phase | variant | committed median s | committed p95 s | steps | WER vs offline | WER vs human |")
    print("|---|---|---|---|---|---|---|---|---|")
    results: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for name, audio, human, reference, ref_text in knobs.programmes(opts.programmes, model_dir):
        for offset in offsets:
            heard, moved = delayed(audio, reference, offset)
            for phase in phases:
                for spec, change in variants:
                    kind = spec if spec == "chunk-ends" else "live"
                    if kind == "chunk-ends" and phase != phases[0]:
                        continue  # chunk ends hear no steps: every phase reads the same
                    delayed_by = opts.commit_delay if kind == "live" else 0.0
                    label = f"{spec}, --commit-delay {delayed_by:g}" if delayed_by else spec
                    if opts.step and kind == "live":
                        label += f", steps {opts.step:g} s"
                    if opts.cost_scale != 1:
                        label += f", cost ×{opts.cost_scale:g}"
                    with knobs.changed(change):
                        seen, lines, transcriber = run(engine, heard, phase, kind, delayed_by, opts.step,
                                                       opts.cost_scale)
                    lat = bench.latencies(moved, seen, 0.0)
                    text = bench.transcript_text(lines)
                    row = (bench.pct(lat, 50), bench.pct(lat, 95), jiwer.wer(ref_text, text), jiwer.wer(human, text))
                    results.setdefault((name, label), []).append(row)
                    print(f"| {name} | {offset:g} | {phase:g} | {label} | {row[0]:.2f} | {row[1]:.2f} | "
                          f"{transcriber.steps} | {row[2]:.1%} | {row[3]:.1%} |", flush=True)
    print("\n| speech | variant | runs | mean committed median s | mean committed p95 s | mean WER vs offline | "
          "mean WER vs human | WER vs human, range |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, label), rows in results.items():
        mean = np.mean(rows, axis=0)
        human = [r[3] for r in rows]
        print(f"| {name} | {label} | {len(rows)} | {mean[0]:.2f} | {mean[1]:.2f} | {mean[2]:.1%} | {mean[3]:.1%} | "
              f"{min(human):.1%}-{max(human):.1%} |")


if __name__ == "__main__":
    main()
