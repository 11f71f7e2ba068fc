"""The speech model's memory as its windows grow, with and without cht's trim.

A decode's buffers are freed, but glibc keeps freed memory in its heaps, so RSS climbs to the
largest decode so far (a longer window, a bigger batch) and stays: a creep over a session's
first half hour, until its longest chunk and largest batch have come. cht hands the free pages
back after decodes (`cht.memory.release_free_memory`). This decodes real speech (beckett.wav
over and over) in windows of 2–25 s and batches of 2–8 eight-second windows, three rounds, and
prints the RSS after each, in two fresh processes: as glibc leaves it, and trimmed after each
decode as the engine does (there at most every 10 s).

    pip install -e '.[test]' && python bench/model_memory.py
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "chaos")]

from conftest import rss_mib  # noqa: E402
from speech import beckett, model_dir  # noqa: E402

from cht.memory import release_free_memory  # noqa: E402
from cht.transcribe.model import SpeechModel  # noqa: E402

WINDOWS_S = (2, 5, 10, 15, 25)
BATCHES = (2, 4, 8)
ROUNDS = 3


def rounds(trim: bool) -> None:
    """One process's three rounds, as a Markdown table."""
    before = rss_mib()
    model = SpeechModel(model_dir())
    loaded = rss_mib()
    speech = np.tile(beckett().astype(np.float32) / 32768, 5)

    def after() -> float:
        if trim:
            release_free_memory(force=True)
        return rss_mib()

    steps = [f"{s} s" for s in WINDOWS_S] + [f"batch of {k}" for k in BATCHES]
    rows = []
    for _ in range(ROUNDS):
        row = []
        for seconds in WINDOWS_S:
            model.transcribe(speech[: seconds * 16_000], language="en", beam_size=1)
            row.append(after())
        for k in BATCHES:
            model.transcribe_batch([speech[: 8 * 16_000]] * k, language="en")
            row.append(after())
        rows.append(row)
    print(f"{'trimmed after each decode' if trim else 'as glibc leaves it'}: RSS before the model "
          f"{before:.0f} MiB, loaded {loaded:.0f} MiB\n")
    print("| round | " + " | ".join(steps) + " |")
    print("|---|" + "---|" * len(steps))
    for i, row in enumerate(rows, 1):
        print(f"| {i} | " + " | ".join(f"{m:.0f}" for m in row) + " |")
    print(f"\nhighest: round 1 {max(rows[0]):.0f} MiB, later rounds {max(max(r) for r in rows[1:]):.0f} MiB\n")


def main() -> None:
    if len(sys.argv) > 1:
        rounds(trim=sys.argv[1] == "--trim")
        return
    print(f"{platform.machine()}, Python {platform.python_version()}\n")
    for way in ("--as-is", "--trim"):
        subprocess.run([sys.executable, __file__, way], check=True)


if __name__ == "__main__":
    main()
