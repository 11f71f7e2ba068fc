"""Scene detection: cht against PySceneDetect on generated decks of every size and style, in one run.

Each deck (tests/synthetic.py `deck`, random per seed) is a talk with known changes of six
kinds — a bullet line added, 2-4 characters added, a bullet fading in (0.3-1 s), a page turn,
a dissolve to the next slide (0.5-1.5 s), a cut to a camera and back — and distractors that
must not count: a webcam box, a pointer that glides and rests, blinking cursors on code slides
and videos playing inside slides. The default matrix: 1280×720, 1920×1080 and 3840×2160, light
and dark themes, x264 crf 18 and crf 30, 25 fps, 2 s GOP.

Per deck, the same file goes through:

* cht: decoding the way analysis does (reference frames only, no deblocking, 4 frames a
  second converted) and `SlideChangeDetector`, one process (`synthetic.detect_file`);
* PySceneDetect 0.7 `ContentDetector()` and `AdaptiveDetector()` with their defaults.

Wall and CPU time (this process, all threads) and precision, recall, F1 at ±0.5 s of each
change (of a fade's or dissolve's middle), one-to-one, with recall per change kind.

    pip install -e '.[bench]' && python bench/scenes.py [--seconds 120] [--seed 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic import deck, detect_file, render_deck, scores

KINDS = ("bullet", "small", "fade", "slide", "dissolve", "cut")
MATRIX = (((1280, 720), "light", 30), ((1280, 720), "dark", 18), ((1920, 1080), "dark", 30),
          ((1920, 1080), "light", 18), ((3840, 2160), "light", 30), ((3840, 2160), "dark", 18))


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def run_cht(video: Path) -> list[float]:
    return [d.t for d in detect_file(video) if d.kind == "scene"]


def run_pyscenedetect(video: Path, detector) -> list[float]:
    from scenedetect import detect

    scenes = detect(str(video), detector)
    return [start.seconds for start, _ in scenes[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120, help="length of a 720p/1080p deck (4K: half)")
    parser.add_argument("--seed", type=int, default=100, help="seed of the first deck (then +1 per deck)")
    parser.add_argument("--only", default="", help="run only decks whose name contains this (e.g. 3840)")
    parser.add_argument("--no-pyscenedetect", action="store_true")
    opts = parser.parse_args()
    from scenedetect import AdaptiveDetector, ContentDetector

    print(f"machine: {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n")
    head = "| deck | s | changes | detector | wall s | CPU s | × real time | P | R | F1 | " + \
           " | ".join(f"R {k}" for k in KINDS) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    misses = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (size, theme, crf) in enumerate(MATRIX):
            name = f"{size[0]}x{size[1]} {theme} crf {crf}"
            if opts.only and opts.only not in name:
                continue
            seconds = opts.seconds / 2 if size[0] > 2000 else opts.seconds
            spec = deck(opts.seed + i, seconds, size, theme)
            video = render_deck(spec, Path(tmp) / f"deck{i}.mp4", crf=crf)
            runs = [("cht", partial(run_cht, video))]
            if not opts.no_pyscenedetect:
                runs += [("PySceneDetect Content", partial(run_pyscenedetect, video, ContentDetector())),
                         ("PySceneDetect Adaptive", partial(run_pyscenedetect, video, AdaptiveDetector()))]
            for label, fn in runs:
                found, wall, cpu = timed(fn)
                s = scores(found, spec)
                kinds = " | ".join(f"{s[f'recall_{k}']:.2f} ({s[f'n_{k}']})" if f"n_{k}" in s else "–" for k in KINDS)
                print(f"| {name} | {seconds:g} | {s['true']} | {label} | {wall:.1f} | {cpu:.1f} | "
                      f"{seconds / wall:.0f}× | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {kinds} |",
                      flush=True)
                if label == "cht":
                    extra = [round(t, 2) for t in found if min(abs(t - c.t) for c in spec.changes) > 0.5]
                    misses.append(f"{name}: missed {s['missed']}, extra {extra}")
            os.unlink(video)
    print("\ncht's misses and extra detections (t, kind):")
    for line in misses:
        print(f"- {line}")


if __name__ == "__main__":
    main()
