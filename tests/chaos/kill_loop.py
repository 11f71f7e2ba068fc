"""The recorder kill loop, shared by `tests/chaos/test_kill_loop.py` (minutes, in CI) and
`bench/soak.py` (half an hour, by hand): record a talk whose words are known, kill -9 the
ffmpeg recorder every 10-20 s (seeded), and check what the files hold afterwards."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import Cht, decode_fully, recorder_pid, wait_for
from speech import match, transcript_words

BEFORE_S = 1.6  # seconds a gap may start before the kill: the 1 s fragment in progress, the
#                 ~0.3 s until ffmpeg writes a finished fragment, the 0.25 s watchdog tick of the clock
AFTER_S = 2.0  # seconds a gap may end after the new recorder ran: the file resumes at its next
#               keyframe (1 s apart), ffmpeg's -readrate reads 0.5 s ahead, the clock's tick
#               (the 20-minute soak measured up to 1.6 s)


@dataclass
class Outage:
    kill: float  # global s
    restart: float  # global s the next recorder was running


@dataclass
class Report:
    seconds: float
    injected: int = 0  # recorder kills
    kills: int = 0  # of which a new recorder took over
    outages: list[Outage] = field(default_factory=list)
    segments: int = 0
    gaps: list[tuple[float, float]] = field(default_factory=list)
    phrases: int = 0
    phrases_lost: list[int] = field(default_factory=list)  # outside every outage: must stay empty
    duplicated_words: list[str] = field(default_factory=list)
    frames_in_gaps: list[float] = field(default_factory=list)
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (s since start, MiB of cht)
    problems: list[str] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(cht: Cht, src: Path, truth: list, phrase_words: int, seconds: float, seed: int,
        session: str = "loop", every: tuple[float, float] = (10.0, 20.0)) -> Report:
    rng = random.Random(seed)
    report = Report(seconds)
    proc = cht.start("record", "--no-ui", "--language", "en", "--session", session, str(src))
    start = time.time()
    kills: list[tuple[float, float]] = []  # (epoch of kill, epoch the next recorder ran)
    next_kill = time.monotonic() + rng.uniform(*every)
    next_sample = 0.0
    while proc.poll() is None and time.time() - start < seconds + 60:
        if time.monotonic() >= next_sample:
            next_sample = time.monotonic() + 10.0
            try:
                report.rss_mib.append((time.time() - start, rss_mib(proc.pid)))
            except OSError:
                pass
        if time.monotonic() >= next_kill and time.time() - start < seconds - 10:
            pid = recorder_pid(proc.pid)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                report.injected += 1
                killed = time.time()
                try:
                    wait_for(lambda: recorder_pid(proc.pid) not in (None, pid), 10, 0.02, what="a new recorder")
                    kills.append((killed, time.time()))
                except AssertionError:
                    report.problems.append(f"no new recorder after the kill at {killed - start:.1f} s")
            next_kill = time.monotonic() + rng.uniform(*every)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        report.problems.append(f"cht record exited {proc.returncode}: {err[-500:]}")
    report.kills = len(kills)
    check(cht, session, truth, phrase_words, kills, report)
    return report


def check(cht: Cht, session: str, truth: list, phrase_words: int, kills, report: Report) -> None:
    root = cht.session_dir(session)
    manifest = cht.manifest(session)
    # global 0 = when the first run's first media arrived (its run note), to within a watchdog tick
    origin = json.loads((root / "segments" / "run_0000.json").read_text())["first_media_at"]
    report.outages = [Outage(k - origin, r - origin) for k, r in kills]
    report.segments = len(manifest["segments"])
    report.gaps = [(g["start"], g["end"]) for g in manifest["gaps"]]
    for seg in manifest["segments"]:
        try:
            decode_fully(root / seg["file"])
        except Exception as exc:
            report.problems.append(f"{seg['file']} does not decode to its end: {exc}")
    # the clock: each segment starts where the last ended, or after a gap that says so
    edges = sorted([(s["global_start"], s["global_start"] + s["duration"]) for s in manifest["segments"]])
    gaps = iter(report.gaps)
    for (_, end), (start, _) in zip(edges, edges[1:]):
        if start - end > 0.001:
            gap = next(gaps, None)
            if gap is None or abs(gap[0] - end) > 0.002 or abs(gap[1] - start) > 0.002:
                report.problems.append(f"a hole {end:.3f}-{start:.3f} the manifest does not list as a gap")
    # every gap is an outage (and every outage left at most one gap), within the margins
    for gap in report.gaps:
        if not any(o.kill - BEFORE_S <= gap[0] and gap[1] <= o.restart + AFTER_S for o in report.outages):
            report.problems.append(f"gap {gap[0]:.2f}-{gap[1]:.2f} matches no outage {report.outages}")
    if len(report.gaps) > len(report.outages):
        report.problems.append(f"{len(report.gaps)} gaps for {len(report.outages)} outages")
    # nothing analysed inside a gap
    frames = [json.loads(line) for line in (root / "frames.jsonl").read_text().splitlines() if line.strip()]
    report.frames_in_gaps = [f["t"] for f in frames if any(a + 0.001 < f["t"] < b - 0.001 for a, b in report.gaps)]
    # the transcript: no word twice, every phrase clear of the outages heard
    heard = sorted(transcript_words(root), key=lambda w: w[1])
    for i, (word, start, end) in enumerate(heard):
        for other, s2, _ in heard[i + 1:i + 6]:
            if other == word and s2 < end - 0.05:
                report.duplicated_words.append(f"{word} at {start:.2f} and {s2:.2f}")
    phrases = [truth[i:i + phrase_words] for i in range(0, len(truth), phrase_words)]
    report.phrases = len(phrases)
    windows = [(o.kill - BEFORE_S, o.restart + AFTER_S) for o in report.outages] + report.gaps
    for n, phrase in enumerate(phrases):
        first, last = phrase[0][1] - 0.5, phrase[-1][2] + 0.5
        if any(first < b and a < last for a, b in windows):
            continue  # the outage may have taken part of it
        found = [i for i, js in match(phrase, heard, tolerance=1.0).items() if js]
        if len(found) < phrase_words - 1:
            report.phrases_lost.append(n)


def table(report: Report) -> str:
    """The report as the Markdown rows bench/README.md keeps."""
    slope = rss_slope(report.rss_mib)
    lost_outside = len(report.phrases_lost) + len(report.duplicated_words) + len(report.frames_in_gaps)
    return (f"| {report.seconds / 60:.0f} min | {report.injected} recorder kill -9 | {report.kills}"
            f" | {report.segments} | {len(report.gaps)} ({sum(b - a for a, b in report.gaps):.1f} s) "
            f"| {report.phrases - len(report.phrases_lost)} / {report.phrases} | {lost_outside} "
            f"| {'n/a' if slope is None else f'{slope:+.2f} MiB/h'} |")


def rss_slope(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of RSS over time, MiB per hour (after the first minute's warm-up)."""
    points = [(t, m) for t, m in samples if t >= 60]
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mm = sum(m for _, m in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 3600 * sum((t - mt) * (m - mm) for t, m in points) / var if var else None
