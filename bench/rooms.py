"""N rooms of continuous lecture speech pushed at real pace into one `cht ingest`.

Each room is a 1280×720 slide lecture (slides, bullets, a webcam box, a pointer) with its own
continuous speech: espeak-ng reading lecture paragraphs in a room's own voice and pace,
sentences joined with no pause longer than a breath (`--speech voiced`: a neural voice reads
them, each room at its own pace). Every room pushes MPEG-TS over TCP to its
own `--listen` URL at real pace; the service records, analyses and transcribes all of them with
one speech engine.

Measured from outside, as a user of the files would: every 0.2 s each room's
`transcript.jsonl` is read; a word's committed latency is the wall time its line was first
seen minus the wall time of the word's end (the room's first media, from its run note, plus
the word's global end). Also: CPU of the whole ingest process tree (both cores = 200 %), its
peak RSS, each room's largest transcript lag, and how long after the media ended the last
word was committed (a room that "fell behind for good" keeps a growing lag: its drain is long).

    apt-get install -y espeak-ng && pip install -e '.[bench]'
    python bench/rooms.py [--rooms 1,2,4,6,8] [--minutes 3] [--stages transcript,...] [--commit-delay S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import jiwer  # noqa: E402
import numpy as np  # noqa: E402

from cht.control import request  # noqa: E402
from cht.errors import SessionError  # noqa: E402
from cht.media.ffmpeg import ffmpeg_exe  # noqa: E402
from conftest import rss_mib  # noqa: E402
from speech import write_wav  # noqa: E402
from synthetic import lecture, render  # noqa: E402

from lecture_text import PARAGRAPHS  # noqa: E402
from neural_voice import GAP_S, voiced  # noqa: E402
from transcribe import normalise  # noqa: E402

VOICES = [("en-us", 165), ("en-gb", 160), ("en-gb-x-rp", 170), ("en-us", 175),
          ("en-gb-scotland", 160), ("en-gb-x-gbclan", 165), ("en-us", 155), ("en-gb", 172)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def speech(room: int, seconds: float, folder: Path) -> Path:
    """Continuous speech for one room: paragraphs read back to back, joined by commas."""
    voice, wpm = VOICES[room % len(VOICES)]
    text = room_text(room, int(seconds / 60 * wpm * 1.15) + 20)
    raw = folder / f"room{room}.espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-g", "1", "-w", str(raw), ", ".join(text)], check=True)
    return room_wav(raw, room, seconds, folder, text)


def room_wav(raw: Path, room: int, seconds: float, folder: Path, text: list[str]) -> Path:
    """The room's speech cut to `seconds` at 48 kHz, and the text read beside it (for the WER)."""
    wav = folder / f"room{room}.wav"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(raw), "-t", str(seconds),
                    "-ar", "48000", "-ac", "1", str(wav)], check=True)
    (folder / f"room{room}.txt").write_text(", ".join(text))
    return wav


def room_text(room: int, words_needed: int) -> list[str]:
    """The paragraphs a room reads, each room starting at another one."""
    order = PARAGRAPHS[room % len(PARAGRAPHS):] + PARAGRAPHS[:room % len(PARAGRAPHS)]
    text, k = [], 0
    while sum(len(p.split()) for p in text) < words_needed:
        text.append(order[k % len(order)])
        k += 1
    return text


def voiced_speech(room: int, seconds: float, folder: Path) -> Path:
    """A neural voice (`neural_voice`) reading the room's paragraphs, each room at its own
    pace, pauses squeezed to 0.15 s."""
    pace = PACES[room % len(PACES)]
    text = room_text(room, int(seconds / 60 * 190 / pace) + 20)
    audio = np.concatenate([np.concatenate([voiced(p, pace), np.zeros(int(GAP_S * 16000), np.float32)])
                            for p in text])
    raw = write_wav(folder / f"room{room}.voiced.wav", (np.clip(audio, -1, 1) * 32767).astype("<i2"))
    return room_wav(raw, room, seconds, folder, text)


def wer_of_read(text: str, heard: str) -> float:
    """WER of a room's committed words against the text read, up to where they end (the
    audio is cut at `--minutes`, mid-text: the words after the cut were never said)."""
    chunks = jiwer.process_words(normalise(text), normalise(heard) or "-").alignments[0]
    while chunks and chunks[-1].type == "delete":
        chunks = chunks[:-1]
    said = chunks[-1].ref_end_idx if chunks else 0
    errors = sum(max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
                 for c in chunks if c.type != "equal")
    return errors / said if said else float("nan")


def real_speech(room: int, seconds: float, folder: Path) -> Path:
    """Real voices back to back: jfk.flac (../shared/media) and beckett.wav (the moonshine
    wheel) alternately, 0.15 s apart, each room starting at another point of the cycle."""
    import moonshine_onnx

    clips = [Path(__file__).resolve().parents[2] / "shared" / "media" / "jfk.flac",
             Path(moonshine_onnx.__file__).parent / "assets" / "beckett.wav"]
    if not clips[0].exists():
        raise SystemExit(f"--speech real needs {clips[0]}")
    inputs, parts = [], []
    for k in range(int(seconds / 10) + 2):
        inputs += ["-i", str(clips[(k + room) % 2])]
        parts.append(f"[{k}:a]aresample=16000,apad=pad_dur=0.15[a{k}]")
    graph = ";".join(parts) + ";" + "".join(f"[a{k}]" for k in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1"
    wav = folder / f"room{room}.real.wav"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *inputs, "-filter_complex", graph,
                    "-t", str(seconds), "-ar", "48000", "-ac", "1", str(wav)], check=True)
    return wav


SPEECH = {"espeak": speech, "real": real_speech, "voiced": voiced_speech}
PACES = [1.0, 1.08, 0.94, 1.15, 0.9, 1.04]  # a room's Piper length scale


def room_media(room: int, seconds: float, video: Path, folder: Path, kind: str = "espeak") -> Path:
    path = folder / f"room{room}.ts"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(video),
                    "-i", str(SPEECH[kind](room, seconds, folder)), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", "aac", "-b:a", "96k", "-t", str(seconds), str(path)], check=True)
    return path


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all below it (one that just ended counts 0)."""
    total = 0.0
    for p in tree(pid):
        try:
            total += rss_mib(p)
        except OSError:
            pass
    return total


class Watch:
    """One room's transcript file, read from outside: when each word was first seen."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: dict[tuple[float, str], tuple[float, float]] = {}  # (start, word) -> (word end, wall seen)
        self.origin: float | None = None

    def poll(self, now: float) -> None:
        if self.origin is None:
            note = self.root / "segments" / "run_0000.json"
            if note.exists():
                self.origin = json.loads(note.read_text())["first_media_at"]
        path = self.root / "transcript.jsonl"
        if not path.exists():
            return
        for row in path.read_text().splitlines():
            try:
                line = json.loads(row)
            except ValueError:
                continue
            for w in line.get("words") or []:  # a word is its time and spelling: lines may share a chunk
                self.seen.setdefault((round(w["start"], 3), w["word"]), (w["end"], now))

    def text(self) -> str:
        """The committed words in time order."""
        return " ".join(word for _, word in sorted(self.seen))

    def latencies(self) -> list[float]:
        return [latency for _, latency in self.timeline()]

    def timeline(self) -> list[tuple[float, float]]:
        """(word end on the room's clock, its latency), in order: when in the lecture words waited."""
        return sorted((end, seen - (self.origin + end)) for end, seen in self.seen.values()) if self.origin else []


def _unlocked(root: Path) -> bool:
    """No process holds the session's analysis lock: its transcript is final."""
    from cht.session import lock_held

    return not lock_held(root / ".analysis.lock")


def run(n: int, seconds: float, video: Path, folder: Path, kind: str = "espeak", stages: str | None = None,
        commit_delay: float = 0.0) -> dict:
    media = [room_media(k, seconds, video, folder, kind) for k in range(n)]
    data = folder / f"data{n}"
    ports = [free_port() for _ in range(n)]
    args = [sys.executable, "-m", "cht.cli", "--data-dir", str(data), "ingest", "--no-ui", "--no-relay",
            "--language", "en", "--grace", "2s", *(["--stages", stages] if stages else []),
            *(["--commit-delay", str(commit_delay)] if commit_delay else []),
            *[a for p in ports for a in ("--listen", f"tcp://127.0.0.1:{p}")]]
    service = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (data / "ingest.sock").exists():
        if service.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the ingest service did not start: {service.stderr.read()}")
        time.sleep(0.1)
    cpu0, t0 = cpu_s(tree(service.pid)), time.monotonic()
    pushes = [subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-i", str(m),
                                "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{p}"], stdin=subprocess.DEVNULL)
              for m, p in zip(media, ports)]
    watches: dict[str, Watch] = {}
    lags: dict[str, float] = {}
    peak_rss = 0.0
    ended_at = None
    last_new = polled = time.monotonic()
    while True:
        now_wall, now = time.time(), time.monotonic()
        for root in sorted((data / "sessions").glob("*")) if (data / "sessions").exists() else []:
            watch = watches.setdefault(root.name, Watch(root))
            before = len(watch.seen)
            watch.poll(now_wall)
            if len(watch.seen) > before:
                last_new = now
        if now - polled >= 1.0:
            polled = now
            try:
                status = request(data / "ingest.sock", "status", timeout=2)
            except SessionError:
                status = {}
            for channel in status.get("channels", []):
                if channel.get("session") and channel.get("transcript_lag") is not None:
                    lags[channel["session"]] = max(lags.get(channel["session"], 0.0), channel["transcript_lag"])
        peak_rss = max(peak_rss, tree_rss_mib(service.pid))
        if ended_at is None and all(p.poll() is not None for p in pushes):
            ended_at = now
            cpu_media = cpu_s(tree(service.pid)) - cpu0
            wall_media = now - t0
        if ended_at is not None:
            closed = len(watches) == n and all(_unlocked(w.root) for w in watches.values())  # drained
            if (closed and now - last_new > 3) or now - last_new > 120:
                break
        time.sleep(0.2)
    drain = last_new - ended_at
    service.send_signal(signal.SIGINT)
    service.wait(300)
    per_room = [w.latencies() for w in watches.values()]
    (folder / f"latencies-{n}-rooms.json").write_text(json.dumps({k: w.timeline() for k, w in watches.items()}))
    every = sorted(x for room in per_room for x in room)
    read = [path.read_text() for k in range(n) if (path := folder / f"room{k}.txt").exists()]
    # Each session against the text it is closest to: rooms read the paragraphs in other orders.
    wers = [min(wer_of_read(text, w.text()) for text in read) for w in watches.values()] if read else []

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))

    return {
        "rooms": n, "words": len(every),
        "median": statistics.median(every) if every else float("nan"), "p95": pct(every, 95),
        "worst_room_p95": max(pct(sorted(r), 95) for r in per_room if r),
        "max_lag": max(lags.values(), default=float("nan")), "drain": max(0.0, drain),
        "cpu": 100 * cpu_media / wall_media, "rss": peak_rss,
        "wer": statistics.mean(wers) if wers else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", default="1,2,4,6,8", help="room counts to run, comma-separated")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each room's lecture")
    parser.add_argument("--keep", type=Path, help="keep the media, sessions and each word's latency "
                        "(latencies-N-rooms.json) in this folder")
    parser.add_argument("--speech", choices=sorted(SPEECH), default="espeak",
                        help="espeak: synthetic paragraphs with no pause; voiced: the same read by a neural voice; "
                             "real: jfk.flac and beckett.wav back to back")
    parser.add_argument("--stages", help="only these analysis stages (cht ingest --stages; default: all)")
    parser.add_argument("--commit-delay", type=float, default=0.0, metavar="S", help="cht ingest --commit-delay S")
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        spec = lecture(duration=seconds, slide_every=30, bullet_every=6, cuts=((seconds / 2, 4),))
        video = render(spec, folder / "lecture.mp4", rate=25, audio=False)
        rows = []
        for n in (int(x) for x in args.rooms.split(",")):
            row = run(n, seconds, video, folder, args.speech, args.stages, args.commit_delay)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.minutes:g}-minute rooms, {args.speech} speech, stages {args.stages or 'all'}, commit delay {args.commit_delay:g} s, machine: {os.cpu_count()} cores, load before: {os.getloadavg()[0]:.1f}\n")
    print("| rooms | words | committed latency median / p95 s | worst room p95 s | max lag s | "
          "last word after media end s | CPU % (200 = both cores) | peak RSS MiB | WER vs text read |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rooms']} | {r['words']} | {r['median']:.2f} / {r['p95']:.2f} | {r['worst_room_p95']:.2f} | "
              f"{r['max_lag']:.1f} | {r['drain']:.1f} | {r['cpu']:.0f} | {r['rss']:.0f} | {r['wer']:.1%} |")


if __name__ == "__main__":
    main()
