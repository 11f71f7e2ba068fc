"""What a long live session costs in the files rewritten while it records: the transcript index
(`transcript/index.json`) and `speakers.json` grow with the session and are rewritten live.

For sessions of 1 to 24 hours of continuous speech (lines and speaker turns at the rates a live
lecture gives, see --lines-per-min / --turns-per-min), one live rewrite of each file: its size,
its wall time, how often it is rewritten (`cht.session.rewrite_every`), and the share of one
core that takes. The transcript index is measured two ways in one run: as the code writes it
(`TranscriptIndex`: each line serialised once, joined at a rewrite) and rebuilt from every line
with indentation at each rewrite, every 2 s (the code before), with the memory each keeps.

    python bench/long_session.py [--hours 1,4,8,24] [--lines-per-min 30] [--turns-per-min 20]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

from cht.session import atomic_write_json, rewrite_every
from cht.speakers import store as speakers
from cht.speakers.labeller import WRITE_EVERY_S
from cht.transcribe.store import INDEX, INDEX_VERSION, TranscriptIndex, TranscriptLine, Word
from cht.transcribe.worker import INDEX_EVERY_S


def lecture_lines(n: int) -> list[TranscriptLine]:
    """`n` committed pieces of 4-5 words, 2 s apart (a silence line every tenth)."""
    lines, t = [], 0.0
    for i in range(n):
        if i % 10 == 9:
            lines.append(TranscriptLine(i, t, t + 1.0, "", [], [t, t + 1.0]))
        else:
            words = [Word(round(t + k * 0.4, 3), round(t + k * 0.4 + 0.3, 3), f" word{i % 97}", 0.9)
                     for k in range(4 + i % 2)]
            lines.append(TranscriptLine(i, words[0].start, words[-1].end, "".join(w.word for w in words).strip(),
                                        words, [t, t + 2.0], True, "en"))
        t += 2.0
    return lines


def rebuilt(lines: list[TranscriptLine], root: Path) -> None:
    """The index as it was written before: rebuilt from every line, with indentation."""
    spoken = [line for line in lines if line.text]
    atomic_write_json(root / INDEX, {
        "version": INDEX_VERSION, "complete": True, "pending": [], "chunks": len(lines),
        "words": sum(len(line.words) for line in spoken),
        "lines": [{"chunk": x.chunk, "start": x.start, "end": x.end, "text": x.text}
                  for x in sorted(spoken, key=lambda x: x.start)]})


def timed(f, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - began)
    return best


def allocated(f):
    tracemalloc.start()
    value = f()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return value, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", default="1,4,8,24")
    parser.add_argument("--lines-per-min", type=float, default=30.0)
    parser.add_argument("--turns-per-min", type=float, default=20.0)
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    (root / "transcript").mkdir()
    print(f"Python {platform.python_version()}, {platform.machine()}; "
          f"{opts.lines_per_min:g} lines and {opts.turns_per_min:g} speaker turns a minute\n")
    print("| hours | file | size MB | one rewrite s | rewritten every s | share of a core | memory MiB |")
    print("|---|---|---|---|---|---|---|")
    for hours in map(float, opts.hours.split(",")):
        lines = lecture_lines(int(hours * 60 * opts.lines_per_min))
        index, memory = allocated(lambda: TranscriptIndex(lines))
        size = index.write(root, [])
        took = timed(lambda: index.write(root, []))
        every = rewrite_every(size, INDEX_EVERY_S)
        print(f"| {hours:g} | index, as written | {size / 1e6:.2f} | {took:.3f} | {every:.0f} | "
              f"{took / every:.1%} | {memory / 2**20:.0f} |")
        kept, memory = allocated(lambda: lecture_lines(len(lines)))
        took = timed(lambda: rebuilt(kept, root), runs=1)
        old_size = (root / INDEX).stat().st_size
        print(f"| {hours:g} | index, rebuilt (before) | {old_size / 1e6:.2f} | {took:.3f} | {INDEX_EVERY_S:.0f} | "
              f"{took / INDEX_EVERY_S:.1%} | {memory / 2**20:.0f} |")
        n = int(hours * 60 * opts.turns_per_min)
        turns = [speakers.Turn(1.5 * k, 1.5 * k + 1.5, f"S{1 + k % 3}") for k in range(n)]
        took = timed(lambda: speakers.set_turns(root, turns))
        size = (root / speakers.MAP).stat().st_size
        every = rewrite_every(size, WRITE_EVERY_S)
        print(f"| {hours:g} | speakers.json | {size / 1e6:.2f} | {took:.3f} | {every:.0f} | {took / every:.1%} | |")
        print(f"| {hours:g} | speakers.json (before) | {size / 1e6:.2f} | {took:.3f} | {WRITE_EVERY_S:.0f} | "
              f"{took / WRITE_EVERY_S:.1%} | |")


if __name__ == "__main__":
    main()
