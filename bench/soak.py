"""The long recorder kill loop (30 minutes by default): the same run and checks as
`tests/chaos/test_kill_loop.py` (a kill in the pause after every phrase), plus the cht process's RSS sampled every 10 s and its
slope. Prints the Markdown row bench/README.md keeps.

    pip install -e '.[test]' && python bench/soak.py [--minutes 30] [--seed 8]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "chaos")]

import kill_loop  # noqa: E402  (tests/chaos: the run and its checks)
from conftest import Cht  # noqa: E402
from speech import beckett_words  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=8)
    opts = parser.parse_args()
    seconds = opts.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "talk.mp4"
        truth = kill_loop.talk(src, seconds)
        report = kill_loop.run(Cht(work / "data"), src, truth, len(beckett_words()), seconds, opts.seed)
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, "
          f"seed {opts.seed}\n")
    print(kill_loop.HEADER)
    print(kill_loop.table(report))
    if report.problems:
        print("\nproblems:\n- " + "\n- ".join(report.problems))
    marks = [m for m in report.rss_mib if m[0] >= 60][:: max(1, len(report.rss_mib) // 10)]
    print("\nRSS of cht record (MiB) over time: " + ", ".join(f"{t / 60:.0f} min {m:.0f}" for t, m in marks))
    for name in ("duplicated_words", "extra_words", "frames_in_gaps"):
        if getattr(report, name):
            print(f"{name}: {getattr(report, name)}")
    print(report.summary())  # last: "checked phrases: X/Y" (Y spoken, X clear of every outage), "lost: N"
    try:
        kill_loop.assert_clean(report)
    except AssertionError as exc:
        sys.exit(f"FAILED: {exc}")


if __name__ == "__main__":
    main()
