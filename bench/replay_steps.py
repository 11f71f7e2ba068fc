"""The commit policy replayed on recorded steps: compare policies without the timing noise.

    python bench/replay_steps.py record lecture steps.json     # one live run, every step kept
    python bench/replay_steps.py replay steps.json [more.json]  # this checkout's policy on them
    python bench/replay_steps.py replay --policy OTHER/agreement.py steps.json

A live run's committed latency moves by 0.5 s of p95 and a point of WER between runs of the
same code (when a step lands against the audio decides what it hears), so a policy change of
that size needs many paired runs to see. `record` runs one programme live as
`bench/transcribe.py` does and keeps each hypothesis the policy was given (each step's words
and where its audio ended, each chunk's final decode) with its wall time. `replay` gives the
same hypotheses, at the same wall times, to `agreement.LocalAgreement` (this checkout's, or
the module at `--policy`) and scores what it commits: per reference word (matched by text and
start within 0.7 s), wall time at commit minus its end; WER of the committed text against the
human text. A replay holds the audio fixed: what a policy commits changes where the live
buffer is trimmed, and so what later steps hear; confirm a change live. (Differences of two
words settled by the surer side scored 0.7 points of WER better in replay and 2.5 worse live.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import jiwer

import transcribe as bench
from cht.transcribe import agreement
from cht.transcribe.store import Word

MATCH_S = 0.7  # a committed word is a reference word when it starts this close to it, same text


def record(name: str, out: Path) -> None:
    from cht.transcribe.engine import SpeechEngine
    from cht.transcribe.model import SpeechModel, default_model_dir

    log: list[dict] = []
    insert, finish = agreement.LocalAgreement.insert, agreement.LocalAgreement.finish

    def kept_insert(self, words, heard_until):
        log.append(dict(ev="step", wall=time.monotonic(), heard=heard_until, hyp=[_row(w) for w in words]))
        return insert(self, words, heard_until)

    def kept_finish(self, words):
        log.append(dict(ev="final", wall=time.monotonic(), heard=None, hyp=[_row(w) for w in words]))
        return finish(self, words)

    agreement.LocalAgreement.insert, agreement.LocalAgreement.finish = kept_insert, kept_finish
    model_dir = default_model_dir(Path(tempfile.gettempdir()) / "cht-bench-cache")
    engine = SpeechEngine(SpeechModel(model_dir))
    audio, human = bench.programme(name)
    reference, _ = bench.offline_reference(model_dir, audio)
    seen, _, t0, _, _, lines = bench.run(engine, audio, "live")
    for entry in log:
        entry["wall"] -= t0
    lat = bench.latencies(reference, seen, t0)
    print(f"{name} live: committed median {bench.pct(lat, 50):.2f} s, p95 {bench.pct(lat, 95):.2f} s, "
          f"WER vs human {jiwer.wer(human, bench.transcript_text(lines)):.1%}")
    out.write_text(json.dumps({"programme": name, "log": log, "reference": reference, "human": human}))


def _row(w: Word) -> list:
    return [w.start, w.end, w.word, w.p]


def replay(policy, steps: dict) -> list[tuple[Word, float]]:
    """(word, wall time) for each word the policy commits, in order."""
    state = policy.LocalAgreement()
    committed = []
    for entry in steps["log"]:
        words = [Word(*row) for row in entry["hyp"]]
        out = state.insert(words, entry["heard"]) if entry["ev"] == "step" else state.finish(words)
        committed += [(w, entry["wall"]) for w in out]
    return committed


def score(steps: dict, committed: list[tuple[Word, float]]) -> tuple[float, float, float]:
    """Committed median and p95 s, WER against the human text."""
    used: set[int] = set()
    lat = []
    for ref in steps["reference"]:
        for i, (w, wall) in enumerate(committed):
            if i not in used and bench.normalise(w.word) == ref["word"] and abs(w.start - ref["start"]) < MATCH_S:
                used.add(i)
                lat.append(wall - ref["end"])
                break
    text = bench.normalise(" ".join(w.word for w, _ in committed))
    return bench.pct(lat, 50), bench.pct(lat, 95), jiwer.wer(steps["human"], text)


def load_policy(path: str | None):
    if path is None:
        return agreement
    spec = importlib.util.spec_from_file_location("replayed_agreement", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    rec = verbs.add_parser("record")
    rec.add_argument("programme")
    rec.add_argument("out", type=Path)
    rep = verbs.add_parser("replay")
    rep.add_argument("--policy", help="an agreement.py to replay instead of this checkout's")
    rep.add_argument("steps", nargs="+", type=Path)
    opts = parser.parse_args()
    if opts.verb == "record":
        record(opts.programme, opts.out)
        return
    policy = load_policy(opts.policy)
    print("| steps | programme | committed median s | committed p95 s | WER vs human |")
    print("|---|---|---|---|---|")
    for path in opts.steps:
        steps = json.loads(path.read_text())
        median, p95, wer = score(steps, replay(policy, steps))
        print(f"| {path.name} | {steps['programme']} | {median:.2f} | {p95:.2f} | {wer:.1%} |")


if __name__ == "__main__":
    main()
