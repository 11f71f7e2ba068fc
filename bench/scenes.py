"""Scene detection: cht against PySceneDetect on the same lecture-like video, in one run.

A 10-minute 1280x720 30 fps lecture (slides with bullets revealed one at a time, cuts to a
moving pattern, a gliding pointer, a blinking cursor and a webcam box; known change times)
is recorded into a cht session, then:

* cht: `analyze_offline` on the recorded session — decode, slide/scene detection, keyframe
  JPEGs and the waveform (the stream-copy recording itself is not timed);
* PySceneDetect 0.7 `ContentDetector()` and `AdaptiveDetector()` with their defaults.

Wall time, CPU time (this process with all its threads, plus cht's worker processes) and
F1 at ±1 s. Then the live share: the CPU
the `cht record` process spends (analysis included, the ffmpeg recorder excluded) while it
records a 720p30 lecture at real pace.

    pip install -e '.[bench]' && python bench/scenes.py [--minutes 10] [--live-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic import f1, lecture, render  # noqa: E402

from cht import events as ev  # noqa: E402
from cht.analyze.pipeline import analyze_offline  # noqa: E402
from cht.session import Session  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (cht's analysis workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def record(video: Path, data: Path) -> Session:
    """The video as a cht session (stream copy, not timed: PySceneDetect reads the file)."""
    env = {**os.environ, "CHT_DATA_DIR": str(data)}
    subprocess.run([sys.executable, "-m", "cht.cli", "record", "--fast", "--no-analyze", "--session", "bench",
                    str(video)], env=env, check=True, capture_output=True)
    return Session.open(data, "bench")


def run_cht(session: Session) -> list[float]:
    frames = analyze_offline(session.root, session.current_manifest().segments, ev.EventBus())
    return [f.t for f in frames if f.kind == "scene"]


def run_pyscenedetect(video: Path, detector) -> list[float]:
    from scenedetect import detect

    scenes = detect(str(video), detector)
    return [start.seconds for start, _ in scenes[1:]]


def live_share(video: Path, data: Path) -> tuple[float, float]:
    """(CPU seconds of the cht process, wall seconds) while recording + analysing live."""
    env = {**os.environ, "CHT_DATA_DIR": str(data)}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "cht.cli", "record", "--session", "live", str(video)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu = 0.0
    while proc.poll() is None:
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK  # this process only, not its children
        except (OSError, IndexError):
            pass
        time.sleep(0.2)
    return cpu, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--live-seconds", type=float, default=60)
    opts = parser.parse_args()
    from scenedetect import AdaptiveDetector, ContentDetector

    duration = opts.minutes * 60
    spec = lecture(duration=duration, cuts=tuple((20.0 + 60 * k, 4.0) for k in range(int(duration // 60))))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = render(spec, tmp / "lecture.mp4")
        session = record(video, tmp / "d")
        rows.append(("cht analyze (decode, detect, JPEGs, waveform)", *timed(lambda: run_cht(session))))
        rows.append(("PySceneDetect ContentDetector()", *timed(lambda: run_pyscenedetect(video, ContentDetector()))))
        rows.append(("PySceneDetect AdaptiveDetector()", *timed(lambda: run_pyscenedetect(video, AdaptiveDetector()))))
        live_spec = lecture(duration=opts.live_seconds)
        live_video = render(live_spec, tmp / "live.mp4")
        cpu, wall = live_share(live_video, tmp / "l")

    print(f"machine: {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print(f"video: {opts.minutes:g} min 1280x720 30 fps H.264, {len(spec.changes)} known changes "
          f"({sum(len(s.bullets) for s in spec.slides)} one-line additions, {len(spec.cuts)} cuts)\n")
    print("| detector | wall s | CPU s | × real time | precision | recall | F1 (±1 s) |")
    print("|---|---|---|---|---|---|---|")
    for name, found, wall_s, cpu_s in rows:
        p, r, score = f1(found, spec.changes)
        print(f"| {name} | {wall_s:.1f} | {cpu_s:.1f} | {duration / wall_s:.0f}× | {p:.3f} | {r:.3f} | {score:.3f} |")
    print(f"\nlive: `cht record` of a {opts.live_seconds:g} s 720p30 lecture at real pace: the cht process "
          f"(analysis included, recorder excluded) used {cpu:.1f} CPU-s in {wall:.1f} s = "
          f"{100 * cpu / wall:.1f} % of one core")


if __name__ == "__main__":
    main()
