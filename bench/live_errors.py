"""Where the live policy's wrong words come from: each committed word against the text read.

    python bench/live_errors.py [--programme lecture] [--offset 0.04] [--phase 0.25] [--commit-delay 2] [--step 0.5] [--cost-scale 0.1] [live|chunk-ends]

One run on the simulated clock of `virtual_live` (same programmes, offsets, phases). Every
committed word is tagged with the decode that committed it (a step or a chunk's final) and that
decode's audio; the words are aligned with the human text (jiwer), and the share of wrong words
(substituted or inserted, plus the text's words missing after them) is printed by how much audio
the decode heard after the word and by where in its window the word was. The wrong words follow,
each with its window: run both policies to see which words only one of them gets wrong.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager
from pathlib import Path

import jiwer

import transcribe as bench
import transcribe_knobs as knobs
import virtual_live
from cht.transcribe.agreement import LocalAgreement
from cht.transcribe.engine import SpeechEngine
from cht.transcribe.model import SpeechModel, default_model_dir
from cht.transcribe.worker import Transcriber

INF = float("inf")
AFTER_EDGES = (-INF, 0.5, 1, 1.5, 2, 3, 5, INF)  # seconds of audio the decode heard after the word
INTO_EDGES = (-INF, 1, 2, 3, 4, 6, 9, INF)  # seconds from the window's start to the word's


@contextmanager
def tagged(log: list):
    """Every committed word, with the decode (step or final) and its audio's global span."""
    window: dict = {}
    draft_done, write_final, commit = Transcriber.draft_done, Transcriber._write_final, LocalAgreement._commit

    def step(self, chunk, *args, **kwargs):
        window.update(source="step", start=chunk.start, end=chunk.end)
        return draft_done(self, chunk, *args, **kwargs)

    def final(self, chunk, *args, **kwargs):
        window.update(source="final", start=chunk.start, end=chunk.end)
        return write_final(self, chunk, *args, **kwargs)

    def committed(self, words):
        log.extend((w, dict(window)) for w in words)
        return commit(self, words)

    Transcriber.draft_done, Transcriber._write_final, LocalAgreement._commit = step, final, committed
    try:
        yield
    finally:
        Transcriber.draft_done, Transcriber._write_final, LocalAgreement._commit = draft_done, write_final, commit


def shares(values: list[float], wrong: list[int], edges) -> None:
    for lo, hi in zip(edges, edges[1:]):
        picked = [j for j, v in enumerate(values) if lo <= v < hi]
        errors = sum(wrong[j] for j in picked)
        label = f"under {hi:g}" if lo == -INF else f"{lo:g} or more" if hi == INF else f"{lo:g}-{hi:g}"
        print(f"| {label} | {len(picked)} | {errors} | {errors / max(1, len(picked)):.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programme", default="lecture")
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument("--phase", type=float, default=0.0)
    parser.add_argument("--commit-delay", type=float, default=0.0, help="live: `--commit-delay` of cht record")
    parser.add_argument("--step", type=float, help="live: seconds between steps (virtual_live's --step)")
    parser.add_argument("--cost-scale", type=float, default=1.0, help="virtual_live's --cost-scale")
    parser.add_argument("kind", nargs="?", default="live", choices=("live", "chunk-ends"))
    opts = parser.parse_args()
    model_dir = default_model_dir(Path(tempfile.gettempdir()) / "cht-bench-cache")
    engine = SpeechEngine(SpeechModel(model_dir))
    (_, audio, human, reference, _), = knobs.programmes(opts.programme, model_dir)
    heard, _ = virtual_live.delayed(audio, reference, opts.offset)
    log: list = []
    with tagged(log):
        virtual_live.run(engine, heard, opts.phase, opts.kind, opts.commit_delay, opts.step, opts.cost_scale)
    log.sort(key=lambda item: item[0].start)
    tokens, owner = [], []  # the committed text, normalised, and which committed word each token is of
    for i, (word, _) in enumerate(log):
        for token in bench.normalise(word.word).split():
            tokens.append(token)
            owner.append(i)
    out = jiwer.process_words(human, " ".join(tokens))
    wrong = [0] * len(tokens)
    for a in out.alignments[0]:
        if a.type in ("substitute", "insert"):
            for j in range(a.hyp_start_idx, a.hyp_end_idx):
                wrong[j] = 1
        elif a.type == "delete" and tokens:
            wrong[min(a.hyp_start_idx, len(tokens) - 1)] += a.ref_end_idx - a.ref_start_idx
    print(f"{opts.programme}, offset {opts.offset:g} s, phase {opts.phase:g}, {opts.kind}: "
          f"WER {out.wer:.1%} against the text, {sum(wrong)} errors in {len(tokens)} words\n")
    words = [log[i] for i in owner]
    print("| audio heard after the word s | words | errors | share |\n|---|---|---|---|")
    shares([w["end"] - word.end for word, w in words], wrong, AFTER_EDGES)
    print("\n| word start after its window's start s | words | errors | share |\n|---|---|---|---|")
    shares([word.start - w["start"] for word, w in words], wrong, INTO_EDGES)
    print("\n| committed by | words | errors |\n|---|---|---|")
    for source in ("step", "final"):
        picked = [j for j, (_, w) in enumerate(words) if w["source"] == source]
        print(f"| {source} | {len(picked)} | {sum(wrong[j] for j in picked)} |")
    print("\nwrong words (the text -> committed, at s, the decode and its audio):")
    for a in out.alignments[0]:
        if a.type != "equal" and tokens:
            said = " ".join(out.references[0][a.ref_start_idx:a.ref_end_idx])
            word, w = words[min(a.hyp_start_idx, len(tokens) - 1)]
            print(f"  {said!r} -> {' '.join(tokens[a.hyp_start_idx:a.hyp_end_idx])!r} at {word.start:.1f}, "
                  f"{w['source']} of {w['start']:.1f}-{w['end']:.1f}")


if __name__ == "__main__":
    main()
