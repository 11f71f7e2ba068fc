"""Slide text (OCR): milliseconds per keyframe and character errors on generated decks.

Each deck is tests/ocr_deck.py's: six pictures with known text (DejaVu Sans titles and
bullets, a DejaVu Sans Mono code slide, light and dark themes, a slide that only gains a
bullet, a camera with no text), H.264 crf 23, 10 fps. Per size it is recorded with
`cht record --fast --no-transcribe` (the OCR stage reads every keyframe live), and scored:

* character errors: Levenshtein edits over every line of every slide / characters of the
  truth (indentation is layout, not characters), and titles right;
* ms per keyframe: every saved keyframe read again in this process by cht's reader (one ONNX
  thread, orientation step off, as the stage runs), after one warm-up; wall and this
  thread's CPU time; the engine's first call (model load) apart;
* CPU share of a lecture, derived: CPU s per keyframe × keyframes a 10-minute talk saves (one
  every `--every` s) / 600 s;
* CPU share of a lecture, measured (`--lecture MINUTES`): a talk of that length — a 720p slide
  every `--every` s (the deck's slides over and over, each title numbered) and continuous real
  speech (jfk.flac from ../shared/media back to back, or beckett.wav where it is absent) — recorded
  by plain `cht record` (transcription, OCR and speakers on) at real pace. The OCR thread's own
  CPU time (the stage's `ocr_cpu_s`) over the media time, beside the cht process's CPU, and the
  worst OCR and transcript lag seen in its status every 2 s (the transcript's also after the first
  minute, when the model has loaded).

    python bench/ocr.py [--sizes 1280x720,1920x1080,960x540] [--every 20]
    python bench/ocr.py --lecture 10    # a 10-minute lecture recorded live
    python bench/ocr.py --slide-words   # needs Debian's espeak-ng

`--slide-words` measures the issue's "slide words help the transcript" before anything is built:
sentences with a rare term each (the term on the slide shown meanwhile) said by espeak-ng,
transcribed by cht's Whisper base with faster-whisper directly (greedy, as live), three ways:
nothing, the slide's rarer words as `hotwords`, and the slide's text as `initial_prompt`. Scored:
rare terms spelled right, WER of the sentence, and any output over twice the words said (a loop).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ocr_deck import Shown, cer, render, slides  # noqa: E402

from cht.analyze.scenes import read_frames  # noqa: E402
from cht.media.ffmpeg import ffmpeg_exe  # noqa: E402
from cht.ocr.reader import read_lines  # noqa: E402
from cht.ocr.text import read_ocr  # noqa: E402


def score(truth, records) -> tuple[int, int, int, int]:
    """(edits, characters, titles right, slides with a title)."""
    edits = chars = right = titled = 0
    for shown in truth:
        inside = [r for r in records if shown.start - 0.5 <= r.t < shown.start + shown.length - 0.5]
        found = inside[0] if inside else None
        if shown.title:
            titled += 1
            right += bool(found and found.title == shown.title)
        got = [line.text for line in found.lines] if found else []
        want = [line.strip() for line in shown.all_lines]
        for i in range(max(len(got), len(want))):
            e, n = cer(got[i] if i < len(got) else "", want[i] if i < len(want) else "")
            edits, chars = edits + e, chars + n
    return edits, chars, right, titled


def run(size: tuple[int, int], work: Path) -> dict:
    truth = slides()
    video = render(truth, work / f"deck-{size[0]}x{size[1]}.mp4", size=size)
    data = work / f"data-{size[1]}"
    env = {**os.environ, "CHT_DATA_DIR": str(data)}
    subprocess.run([sys.executable, "-m", "cht.cli", "record", str(video), "--session", "deck", "--fast",
                    "--no-transcribe", "--no-ui"], env=env, check=True, capture_output=True)
    root = data / "sessions" / "deck"
    edits, chars, right, titled = score(truth, read_ocr(root))
    frames = [root / f.file for f in read_frames(root)]
    walls, cpus = [], []
    for path in frames:
        wall, cpu = time.perf_counter(), time.thread_time()
        read_lines(path)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.thread_time() - cpu)
    return {"size": f"{size[0]}x{size[1]}", "keyframes": len(frames), "edits": edits, "chars": chars,
            "titles": f"{right}/{titled}", "ms": statistics.median(walls) * 1000,
            "cpu_ms": statistics.median(cpus) * 1000, "max_ms": max(walls) * 1000}


SAID = (  # (what is said, the rare term, the slide's text)
    ("the brachistochrone curve is the fastest path", "brachistochrone",
     "Stochastic gradient descent\nThe brachistochrone curve is fastest"),
    ("we add nesterov momentum to the update", "nesterov", "Optimisers\nNesterov momentum\nAdam"),
    ("the kullback leibler divergence is not symmetric", "kullback", "Information theory\nKullback-Leibler divergence"),
    ("a lipschitz continuous gradient bounds the step", "lipschitz", "Smoothness\nLipschitz continuous gradients"),
    ("the noise is heteroscedastic across the inputs", "heteroscedastic", "Noise models\nHeteroscedastic noise"),
    ("we use chebyshev polynomials for the filter", "chebyshev", "Spectral filters\nChebyshev polynomials"),
    ("the levenshtein distance counts the edits", "levenshtein", "Metrics\nLevenshtein distance"),
    ("an eigendecomposition of the covariance matrix", "eigendecomposition", "PCA\nEigendecomposition of the covariance"),
    ("runge kutta methods integrate the ode", "runge", "Solvers\nRunge-Kutta methods"),
    ("the softplus activation is smooth", "softplus", "Activations\nSoftplus is smooth"),
)
COMMON = set("the a an of is to for we and in on are not use add path across inputs methods".split())


def slide_words(text: str) -> str:
    """The slide's rarer words: longer than four letters and not among the common ones."""
    import re

    words = dict.fromkeys(w for w in re.findall(r"[A-Za-z][A-Za-z-]+", text) if len(w) > 4 and w.lower() not in COMMON)
    return " ".join(words)


def hotword_trial(work: Path) -> None:
    from faster_whisper import WhisperModel

    from cht.config import default_cache_dir
    from cht.transcribe.model import default_model_dir
    from speech import word_error_rate

    model = WhisperModel(str(default_model_dir(default_cache_dir())), device="cpu", compute_type="int8", cpu_threads=2)
    ways = {"none": {}, "hotwords": "hotwords", "prompt": "initial_prompt"}
    results = {w: {"terms": 0, "wer": [], "loops": 0} for w in ways}
    for i, (said, term, slide) in enumerate(SAID):
        wav = work / f"said{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), said], check=True)
        for way, option in ways.items():
            extra = {} if not option else {option: slide_words(slide) if option == "hotwords" else slide.replace("\n", ". ")}
            segments, _ = model.transcribe(str(wav), language="en", beam_size=1, temperature=0.0,
                                           condition_on_previous_text=False, vad_filter=False, **extra)
            text = " ".join(s.text for s in segments).strip()
            r = results[way]
            r["terms"] += term in text.lower().replace("-", " ").replace("–", " ")
            r["wer"].append(word_error_rate(said, text))
            r["loops"] += len(text.split()) > 2 * len(said.split())
            print(f"{way:9} {said!r} -> {text!r}", file=sys.stderr)
    print(f"\n| slide words | rare terms right (of {len(SAID)}) | mean WER | outputs over 2× the words |")
    print("|---|---|---|---|")
    for way, r in results.items():
        print(f"| {way} | {r['terms']} | {statistics.mean(r['wer']):.1%} | {r['loops']} |")


SETTLED_S = 60.0  # the transcript lag is also given from here on: before, the model is loading while media arrives


def lecture_video(minutes: float, every: float, work: Path) -> Path:
    """Slides every `every` s (the deck's text slides in turn, titles numbered) with continuous speech."""
    from speech import beckett_path, jfk_path

    deck = [s for s in slides() if s.title]
    shown = []
    for i in range(int(minutes * 60 // every)):
        base = deck[i % len(deck)]
        shown.append(Shown(i * every, every, f"{base.title} {i + 1}", base.lines, base.theme, base.code))
    video = render(shown, work / "slides.mp4")
    voice = jfk_path() if jfk_path().exists() else beckett_path()
    talk = work / "lecture.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(video),
                    "-stream_loop", "-1", "-i", str(voice), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", "aac", "-ar", "48000", "-t", f"{minutes * 60}", str(talk)], check=True)
    return talk


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lecture(minutes: float, every: float, work: Path) -> dict:
    """Record the lecture live and watch the OCR stage's CPU and lag in its status."""
    from cht.control import request
    from cht.errors import SessionError

    talk = lecture_video(minutes, every, work)
    data = work / "data-lecture"
    env = {**os.environ, "CHT_DATA_DIR": str(data)}
    proc = subprocess.Popen([sys.executable, "-m", "cht.cli", "record", str(talk), "--session", "lecture",
                             "--language", "en", "--no-ui"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    control = data / "sessions" / "lecture" / "control.sock"
    last, ocr_lag, lags, process_cpu = {}, 0.0, [], 0.0
    began = time.monotonic()
    while proc.poll() is None:
        time.sleep(2)
        try:
            status = request(control, "status", timeout=2)
            process_cpu = cpu_s(proc.pid)
        except (SessionError, OSError):
            continue
        last = status
        ocr_lag = max(ocr_lag, status.get("ocr_lag") or 0.0)
        lags.append((time.monotonic() - began, status.get("transcript_lag") or 0.0))
    if proc.returncode != 0 or not last:
        sys.exit(f"cht record failed (exit {proc.returncode}) or never answered its status")
    media = minutes * 60
    return {"minutes": minutes, "keyframes": last["ocr_read"], "ocr_cpu": last["ocr_cpu_s"],
            "share": last["ocr_cpu_s"] / media, "process_cpu": process_cpu, "ocr_lag": ocr_lag,
            "transcript_lag": max(lag for _, lag in lags),
            "settled_lag": max((lag for t, lag in lags if t >= SETTLED_S), default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1280x720,1920x1080,960x540")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between keyframes in a lecture")
    parser.add_argument("--slide-words", action="store_true", help="measure slide words as Whisper hotwords/prompt")
    parser.add_argument("--lecture", type=float, metavar="MINUTES", help="record a lecture this long live")
    args = parser.parse_args()
    if args.lecture:
        with tempfile.TemporaryDirectory() as tmp:
            r = lecture(args.lecture, args.every, Path(tmp))
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
        print("| lecture | keyframes read | OCR CPU s | OCR share of one core | cht process CPU s | OCR of cht's CPU "
              f"| worst OCR lag | worst transcript lag (after {SETTLED_S:g} s) |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {r['minutes']:g} min, a slide every {args.every:g} s | {r['keyframes']} | {r['ocr_cpu']:.1f} | "
              f"{r['share']:.1%} | {r['process_cpu']:.0f} | {r['ocr_cpu'] / r['process_cpu']:.1%} | "
              f"{r['ocr_lag']:.1f} s | {r['transcript_lag']:.1f} s ({r['settled_lag']:.1f} s) |")
        return
    if args.slide_words:
        with tempfile.TemporaryDirectory() as tmp:
            hotword_trial(Path(tmp))
        return
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        blank = Path(tmp) / "warm.jpg"
        from PIL import Image

        Image.new("RGB", (1280, 720), "white").save(blank)
        t = time.perf_counter()
        read_lines(blank)
        load = time.perf_counter() - t
        rows = [run(size, Path(tmp)) for size in sizes]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"engine's first call (model load) {load:.2f} s\n")
    print("| deck | keyframes | characters | errors | CER | titles right | ms / keyframe (median) | max ms | "
          f"CPU ms / keyframe | CPU share, a keyframe every {args.every:g} s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = r["cpu_ms"] / 1000 / args.every
        print(f"| {r['size']} | {r['keyframes']} | {r['chars']} | {r['edits']} | {r['edits'] / r['chars']:.2%} | "
              f"{r['titles']} | {r['ms']:.0f} | {r['max_ms']:.0f} | {r['cpu_ms']:.0f} | {share:.1%} of one core |")


if __name__ == "__main__":
    main()
