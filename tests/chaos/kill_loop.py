"""The recorder kill loop, shared by `tests/chaos/test_kill_loop.py` (minutes, in CI) and
`bench/soak.py` (half an hour, by hand): record a talk whose words are known, kill -9 the
ffmpeg recorder in the pause after each phrase (seeded moment), and check what the files
hold afterwards.

The kills fall between phrases so that the phrases can be checked: a phrase that an outage
may have cut into proves nothing, and is counted as spoken but not checked
(`checked phrases: X/Y`). The media clock is the wall clock less the session's origin (a
file played at real pace *is* the clock), so the loop knows where the talk is."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from conftest import Cht, decode_fully, recorder_pid, rss_mib, wait_for
from speech import make_speech_video, match, same_word, transcript_words

BEFORE_S = 1.6  # seconds a gap may start before the kill: the 1 s fragment in progress, the
#                 ~0.3 s until ffmpeg writes a finished fragment, the 0.25 s watchdog tick of the clock
AFTER_S = 2.0  # seconds a gap may end after the new recorder ran: the file resumes at its next
#               keyframe (1 s apart; the run waits for the wall to reach it), the clock's tick
#               (the 20-minute soak measured up to 1.6 s, before that wait)
MARGIN_S = 0.5  # a phrase is clear of an outage when this far from its window
PERIOD_S = 18.0  # one phrase (beckett.wav: 8.3 s of speech) every 18 s: ~8 s of pause after it
KILL_AFTER_S = (BEFORE_S + MARGIN_S + 0.2, BEFORE_S + MARGIN_S + 0.7)  # s after a phrase ends
MIN_CHECKED = 0.8  # share of the phrases spoken that must be clear of every outage
WARM_S = 300.0  # the RSS slope is also given from this far in: apart from the start's growth


def talk(path: Path, seconds: float) -> list[tuple[str, float, float]]:
    """A talk of `seconds` with a phrase every PERIOD_S; returns the true words."""
    offsets = [1.0 + PERIOD_S * k for k in range(int((seconds - 13) // PERIOD_S) + 1)]
    return make_speech_video(path, offsets, seconds)


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
    phrases: int = 0  # spoken
    checked: int = 0  # of which clear of every outage window, so compared with the transcript
    phrases_lost: list[int] = field(default_factory=list)  # checked and not heard: must stay empty
    duplicated_words: list[str] = field(default_factory=list)  # heard more often than spoken
    extra_words: list[str] = field(default_factory=list)  # heard where nothing was said
    frames_in_gaps: list[float] = field(default_factory=list)
    restart_s: list[float] = field(default_factory=list)  # kill to the next recorder running
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (s since start, MiB of cht)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"checked phrases: {self.checked}/{self.phrases}\nlost: {len(self.phrases_lost)}"


def phrase_spans(truth: list, phrase_words: int) -> list[tuple[float, float]]:
    return [(truth[i][1], truth[i + phrase_words - 1][2]) for i in range(0, len(truth), phrase_words)]


def run(cht: Cht, src: Path, truth: list, phrase_words: int, seconds: float, seed: int,
        session: str = "loop") -> Report:
    rng = random.Random(seed)
    report = Report(seconds)
    # global (media) times to kill at: in the pause after each phrase
    plan = [end + rng.uniform(*KILL_AFTER_S) for _, end in phrase_spans(truth, phrase_words)]
    plan = [t for t in plan if t < seconds - 10]
    proc = cht.start("record", "--no-ui", "--language", "en", "--session", session, str(src))
    start = time.time()
    note = cht.session_dir(session) / "segments" / "run_0000.json"
    origin = None
    kills: list[tuple[float, float]] = []  # (epoch of kill, epoch the next recorder ran)
    next_sample = 0.0
    while proc.poll() is None and time.time() - start < seconds + 60:
        if time.monotonic() >= next_sample:
            next_sample = time.monotonic() + 10.0
            try:
                report.rss_mib.append((time.time() - start, rss_mib(proc.pid)))
            except OSError:
                pass
        if origin is None:
            try:
                origin = json.loads(note.read_text())["first_media_at"]
            except (OSError, ValueError, KeyError):
                pass
        elif plan and time.time() - origin >= plan[0]:
            plan.pop(0)
            pid = recorder_pid(proc.pid)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                report.injected += 1
                killed = time.time()
                try:
                    wait_for(lambda: recorder_pid(proc.pid) not in (None, pid), 10, 0.02, what="a new recorder")
                    kills.append((killed, time.time()))
                    report.restart_s.append(time.time() - killed)
                except AssertionError:
                    report.problems.append(f"no new recorder after the kill at {killed - start:.1f} s")
        time.sleep(0.02)
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
    report.gaps = [(g["start"], g["end"]) for g in manifest["gaps"] if g["end"] > g["start"]]  # not a file set aside
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
    # the transcript, whole, against the talk: no word heard more often than said, nothing
    # heard in the pauses, and every phrase clear of the outages heard
    heard = sorted(transcript_words(root), key=lambda w: w[1])
    for i, (word, start, end) in enumerate(heard):
        for other, s2, _ in heard[i + 1:]:
            if s2 >= end - 0.05:
                break
            if other == word:
                report.duplicated_words.append(f"{word} at {start:.2f} and {s2:.2f} (overlapping)")
    phrases = [truth[i:i + phrase_words] for i in range(0, len(truth), phrase_words)]
    spans = [(p[0][1] - 1.0, p[-1][2] + 1.0) for p in phrases]
    for word, start, end in heard:
        if not any(a <= start and end <= b for a, b in spans):
            report.extra_words.append(f"{word} at {start:.2f}")
    for phrase, (a, b) in zip(phrases, spans):
        # "fail" heard as "failed" is the same word (speech.same_word): count them as one
        words = sorted({w for w, _, _ in phrase}, key=len)
        key = lambda w: next((x for x in words if same_word(w, x)), w)  # noqa: E731
        said = Counter(key(w) for w, _, _ in phrase)
        got = Counter(key(w) for w, s, e in heard if a <= s and e <= b)
        report.duplicated_words += [f"{w} x{n} at {a + 1:.1f}" for w, n in got.items() if n > said.get(w, 0) > 0]
    report.phrases = len(phrases)
    windows = [(o.kill - BEFORE_S, o.restart + AFTER_S) for o in report.outages] + report.gaps
    for n, phrase in enumerate(phrases):
        first, last = phrase[0][1] - MARGIN_S, phrase[-1][2] + MARGIN_S
        if any(first < b and a < last for a, b in windows):
            continue  # the outage may have taken part of it: spoken, not checked
        report.checked += 1
        found = [i for i, js in match(phrase, heard, tolerance=1.0).items() if js]
        if len(found) < phrase_words - 1:
            report.phrases_lost.append(n)


HEADER = ("| length | recorder kill -9 | survived (restart) | segments | gaps (total) | checked phrases"
          " | lost | duplicated / extra words | keyframes in gaps | RSS slope |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def table(report: Report) -> str:
    """The report as the Markdown row bench/README.md keeps (under HEADER)."""
    slope, settled = rss_slope(report.rss_mib), rss_slope(report.rss_mib, after=WARM_S)
    if slope is not None and settled is not None and report.seconds >= 2 * WARM_S:
        slope_text = f"{slope:+.2f} MiB/h (after {WARM_S / 60:.0f} min: {settled:+.2f})"
    else:
        slope_text = "n/a" if slope is None else f"{slope:+.2f} MiB/h"
    restart = (f" ({min(report.restart_s):.2f}–{max(report.restart_s):.2f} s)" if report.restart_s else "")
    return (f"| {report.seconds / 60:.1f} min | {report.injected} | {report.kills}{restart}"
            f" | {report.segments} | {len(report.gaps)} ({sum(b - a for a, b in report.gaps):.1f} s) "
            f"| {report.checked}/{report.phrases} | {len(report.phrases_lost)} "
            f"| {len(report.duplicated_words)} / {len(report.extra_words)} | {len(report.frames_in_gaps)} "
            f"| {slope_text} |")


def assert_clean(report: Report) -> None:
    """What both the CI test and the soak require."""
    assert not report.problems, report.problems
    assert report.phrases and report.checked >= MIN_CHECKED * report.phrases, report.summary()
    assert not report.frames_in_gaps, report.frames_in_gaps
    assert not report.duplicated_words, report.duplicated_words
    assert not report.extra_words, report.extra_words
    assert not report.phrases_lost, (report.phrases_lost, report)


def rss_slope(samples: list[tuple[float, float]], after: float = 60.0) -> float | None:
    """Least-squares slope of RSS over time, MiB per hour, from `after` s on (the first minute
    loads the models)."""
    points = [(t, m) for t, m in samples if t >= after]
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mm = sum(m for _, m in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 3600 * sum((t - mt) * (m - mm) for t, m in points) / var if var else None
