"""Live runs of one programme with a policy constant set to other values, in one process:
which knob moves committed latency and WER, and by how much.

    python bench/transcribe_knobs.py [--programmes lecture,continuous] [base] agreement.MATURE_P=0.6 worker.CONTEXT_S=4 ...

Each argument is `module.NAME=value` for a module of `cht.transcribe` (`base`: nothing
changed; a value with commas is a tuple: `model.STEP_WINDOWS_S=6,8,10,15,20,30`; knobs joined by
`+` are set together: `agreement.AGREED_AFTER=3+agreement.MATURE_S=1`); each is one
live run per programme, fed as `bench/transcribe.py` feeds it, against the same offline
reference. Rows as in bench/README.md's "Which knob" table.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
from contextlib import contextmanager
from pathlib import Path

import jiwer

import transcribe as bench
from cht.transcribe.engine import SpeechEngine
from cht.transcribe.model import SpeechModel, default_model_dir


def knob(spec: str) -> list[tuple[object, str, float | int | tuple[float, ...]]]:
    """The changes a variant makes: `base` none, else `module.NAME=value` knobs joined by `+`."""
    return [] if spec == "base" else [_one_knob(part) for part in spec.split("+")]


def _one_knob(spec: str) -> tuple[object, str, float | int | tuple[float, ...]]:
    name, _, value = spec.partition("=")
    module, _, attr = name.rpartition(".")
    try:
        target = importlib.import_module(f"cht.transcribe.{module}") if module else None
        if target is None or not hasattr(target, attr):
            raise ImportError
        number = int if value.lstrip("-").isdigit() else float  # a beam size must be an int
        return target, attr, tuple(map(float, value.split(","))) if "," in value else number(value)
    except (ImportError, ValueError):
        raise SystemExit(f"{spec}: give module.NAME=value for a constant of cht.transcribe "
                         "(agreement.MATURE_P=0.8)") from None


def programmes(names: str, model_dir: Path):
    """Each programme named (comma-separated) with faster-whisper's own reading of it: name,
    audio, the human text, the reference words and their text."""
    for name in names.split(","):
        audio, human = bench.programme(name)
        reference, _ = bench.offline_reference(model_dir, audio)
        yield name, audio, human, reference, " ".join(w["word"] for w in reference)


@contextmanager
def changed(changes: list[tuple[object, str, object]]):
    """The knobs set for the block (`knob`'s answer; []: nothing changed)."""
    saved = [(target, attr, getattr(target, attr)) for target, attr, _ in changes]
    for target, attr, value in changes:
        setattr(target, attr, value)
    try:
        yield
    finally:
        for target, attr, value in reversed(saved):
            setattr(target, attr, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programmes", default="lecture,continuous")
    parser.add_argument("variants", nargs="+")
    opts = parser.parse_args()
    variants = [(spec, knob(spec)) for spec in opts.variants]
    model_dir = default_model_dir(Path(tempfile.gettempdir()) / "cht-bench-cache")
    engine = SpeechEngine(SpeechModel(model_dir))
    print("| speech | variant | committed median s | committed p95 s | RTF | WER vs offline | WER vs human |")
    print("|---|---|---|---|---|---|---|")
    for name, audio, human, reference, ref_text in programmes(opts.programmes, model_dir):
        for spec, change in variants:
            with changed(change):
                seen, transcriber, t0, _, _, lines = bench.run(engine, audio, "live")
            lat = bench.latencies(reference, seen, t0)
            text = bench.transcript_text(lines)
            print(f"| {name} | {spec} | {bench.pct(lat, 50):.2f} | {bench.pct(lat, 95):.2f} | "
                  f"{transcriber.busy_s / (len(audio) / bench.RATE):.3f} | {jiwer.wer(ref_text, text):.1%} | "
                  f"{jiwer.wer(human, text):.1%} |", flush=True)


if __name__ == "__main__":
    main()
