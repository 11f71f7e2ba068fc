"""Search speed on a large index: 1,000 hours of synthetic transcript in SQLite FTS5.

Lines of ~10 words every ~4 s from a Zipf-distributed vocabulary of 20,000 words (some
accented), spread over 500 sessions of 2 h. Queries: single words (common and rare), two-word
queries (phrase-first ranking runs two FTS queries), quoted phrases, prefixes, exclusions.
Reported: median and p95 per query through `SearchIndex.search` (what `cht search` and the
UI call), build time and index size per hour.

    python bench/search.py [--hours 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cht.index.search import INDEX_FILE, SearchIndex
from cht.transcribe.store import TranscriptLine, Word

SESSION_HOURS = 2
LINE_S = 4.0


def vocabulary(n: int, rng) -> list[str]:
    letters = list("abcdefghijklmnoprstuvwy") + ["é", "ü", "ñ"]
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters, size=int(rng.integers(2, 10)))))
    return sorted(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1000)
    parser.add_argument("--queries", type=int, default=400)
    opts = parser.parse_args()
    rng = np.random.default_rng(7)
    vocab = vocabulary(20_000, rng)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    weights /= weights.sum()
    lines_per_session = int(SESSION_HOURS * 3600 / LINE_S)
    sessions = max(1, int(opts.hours / SESSION_HOURS))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index = SearchIndex(tmp)
        began = time.perf_counter()
        sampled_lines = []
        for s in range(sessions):
            picks = rng.choice(len(vocab), size=(lines_per_session, 10), p=weights)
            batch = []
            for i, row in enumerate(picks):
                start = i * LINE_S
                words = [Word(start + 0.35 * k, start + 0.35 * k + 0.3, " " + vocab[w], 0.9)
                         for k, w in enumerate(row)]
                text = " ".join(vocab[w] for w in row)
                batch.append(TranscriptLine(i, start, start + 3.5, text, words, [start, start + LINE_S]))
            index.add(f"s{s:04d}", batch, started=1.7e9 + s * 86400, source="bench")
            sampled_lines += [batch[i].text for i in rng.integers(0, len(batch), size=2)]
        build_s = time.perf_counter() - began
        size = sum(p.stat().st_size for p in tmp.glob(INDEX_FILE + "*"))
        index.close()

        index = SearchIndex(tmp)
        kinds = {
            "common word": lambda: vocab[int(rng.integers(0, 50))],
            "rare word": lambda: vocab[int(rng.integers(5000, 20000))],
            "two words": lambda: " ".join(str(rng.choice(sampled_lines)).split()[:2]),
            "quoted phrase": lambda: '"' + " ".join(str(rng.choice(sampled_lines)).split()[3:6]) + '"',
            "prefix": lambda: vocab[int(rng.integers(0, 2000))][:3] + "*",
            "word -exclusion": lambda: f"{vocab[int(rng.integers(0, 200))]} -{vocab[int(rng.integers(0, 200))]}",
        }
        rows = []
        every = []
        for name, make in kinds.items():
            times = []
            for _ in range(opts.queries // len(kinds)):
                q = make()
                t = time.perf_counter()
                index.search(q, limit=20)
                times.append((time.perf_counter() - t) * 1000)
            every += times
            rows.append((name, statistics.median(times), float(np.percentile(times, 95))))
        rows.append(("all", statistics.median(every), float(np.percentile(every, 95))))
        index.close()
    hours = sessions * SESSION_HOURS
    print(f"\n{hours} h of transcript ({sessions * lines_per_session:,} lines, {sessions * lines_per_session * 10:,} "
          f"words) on {os.cpu_count()} cores, {platform.machine()}: built in {build_s:.0f} s, "
          f"{size / 2**20:.0f} MiB ({size / hours / 2**20:.2f} MiB per hour)\n")
    print("| query | median ms | p95 ms |")
    print("|---|---|---|")
    for name, median, p95 in rows:
        print(f"| {name} | {median:.2f} | {p95:.2f} |")


if __name__ == "__main__":
    main()
