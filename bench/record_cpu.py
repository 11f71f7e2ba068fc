"""CPU cost of recording: CPU seconds per minute of recorded media.

Source: a generated 1280x720 30 fps H.264 (3 Mb/s) + AAC file whose audio is real speech
(beckett.wav every 12 s, so Whisper has work), recorded by the real `cht record` at real
pace (as a live source would arrive) with what it runs by default (recorder, scenes,
waveform, live transcript), without the transcript, recording only, and with --fast. The
recorder's CPU comes from its own /proc counters, sampled until it exits; cht's total from
the rusage of the `cht record` process tree: Python start-up, loading the speech model, the
follower's decoding, every stage, and the recorder. A re-encode of the same media (x264
veryfast, what a recorder that does not stream-copy pays) is the reference row.

    python bench/record_cpu.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cht.media.ffmpeg import ffmpeg_exe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from speech import speech_wav  # noqa: E402  (tests/: beckett.wav at known offsets)

TICK = os.sysconf("SC_CLK_TCK")


def make_source(path: Path, seconds: int) -> None:
    wav = speech_wav(path.with_suffix(".wav"), [1.0 + 12.0 * k for k in range(int(seconds // 12))], seconds)
    subprocess.run([
        ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=s=1280x720:r=30:d={seconds}",
        "-i", str(wav),
        "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "3M", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", str(path),
    ], check=True)


def proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def recorder_of(pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"seg_%05d.mp4" in cmd:
                return int(entry.name)
    return None


def record(src: Path, data_dir: Path, name: str, *flags: str) -> dict:
    env = {**os.environ, "CHT_DATA_DIR": str(data_dir)}
    args = [sys.executable, "-m", "cht.cli", "record", "--no-ui", "--language", "en", "--session", name, str(src), *flags]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: list[float] = []

    def sample() -> None:
        pid = None
        while proc.poll() is None:
            pid = pid or recorder_of(proc.pid)
            if pid and (cpu := proc_cpu(pid)) is not None:
                samples.append(cpu)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    proc.wait()
    sampler.join()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    manifest = json.loads((data_dir / "sessions" / name / "manifest.json").read_text())
    minutes = manifest["duration"] / 60
    return {"media_s": manifest["duration"], "wall_s": wall, "recorder_cpu": max(samples, default=0.0),
            "total_cpu": total, "minutes": minutes}


def reencode(src: Path, out: Path) -> dict:
    args = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(src),
            "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out)]
    start = time.monotonic()
    proc = subprocess.Popen(args)
    _, _, usage = os.wait4(proc.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime
    with __import__("av").open(str(src)) as c:
        media = c.duration / 1e6
    return {"media_s": media, "wall_s": time.monotonic() - start, "recorder_cpu": cpu, "total_cpu": cpu,
            "minutes": media / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the source (s)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src.mp4"
        make_source(src, opts.seconds)
        rows = [
            ("cht record --no-analyze, real pace (recording only)", record(src, tmp / "d0", "rec", "--no-analyze")),
            ("cht record --no-transcribe, real pace (+ scenes, waveform)",
             record(src, tmp / "d1", "scenes", "--no-transcribe")),
            ("cht record, real pace (+ live transcript: the default)", record(src, tmp / "d2", "all")),
            ("cht record --fast (the default, at file speed)", record(src, tmp / "d3", "fast", "--fast")),
            ("reference: ffmpeg re-encode x264 veryfast", reencode(src, tmp / "re.mp4")),
        ]
    cpu = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    print(f"machine: {platform.node()} ({cpu}), Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print(f"source: 1280x720 30 fps H.264 (3 Mb/s) + AAC speech (beckett.wav every 12 s), {opts.seconds} s\n")
    print("| run | media s | wall s | recorder CPU-s / media min | % of one core | cht total CPU-s / media min |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        per_min = r["recorder_cpu"] / r["minutes"]
        print(f"| {name} | {r['media_s']:.1f} | {r['wall_s']:.1f} | {per_min:.2f} | {per_min / 60 * 100:.2f} % "
              f"| {r['total_cpu'] / r['minutes']:.2f} |")


if __name__ == "__main__":
    main()
