"""Transcription: committed latency, WER, RTF and CPU, live and catch-up, pause-rich and continuous.

Programmes (16 kHz mono, with the human text):
- pause-rich: every real recording (../shared/media/*, beckett.wav) twice, 1.5 s pauses between;
- continuous: the same recordings three times, joined by 0.15 s of silence (a lecture's rhythm);
- synthetic: espeak-ng paragraphs of clauses joined by commas (only when espeak-ng is installed);
- lecture: the rooms bench's eight lecture paragraphs (2.3 min, 402 words) the same way, 0.15 s
  apart: long enough that a few words either way move the WER by less than a point (not in
  the default set: it takes three minutes a run).
- voiced: the same paragraphs read by a neural voice (`neural_voice`: Piper's en_US "joe"),
  its pauses squeezed to 0.15 s: a human-like voice at the espeak lecture's rhythm (1.9 min).
- noisy: the voiced lecture under pink noise at `NOISE_SNR_DB` (a hall's ventilation heard by a
  distant microphone; seeded, so every run hears the same noise).

Live: fed to a `Transcriber` at real pace in pieces of `RecordOptions.fragment_s` (what the
recorder's fragments deliver: 0.5 s now, 1 s before; the code on PYTHONPATH decides),
through the process's `SpeechEngine`. Per spoken word: the wall time from its end to the first
committed line that holds it (`transcript.jsonl` is written before the event is published).
Word ends and the reference text come from faster-whisper's own `transcribe()` of the same
audio, same model (beam 5, 30 s windows). Catch-up: the same transcriber with `cht
transcribe`'s options, fed as fast as it takes the audio; its wall time is compared with
faster-whisper's `transcribe()`. RTF: model seconds per audio second; CPU: process CPU
seconds per audio second (all threads: VAD, the engine, the feeding).

    python bench/transcribe.py [--programmes pause-rich,continuous,synthetic,lecture,voiced,noisy] [--runs live,catch-up,chunk-ends] [--language en|detect] [--tile N]

`chunk-ends`: live, with the policy before streaming commit (no steps: a chunk's words are
committed when a pause or the 15 s cut closes it), the baseline the issue's "WER no worse than
today's policy" compares with, in the same run.

`--tile N` plays each programme N times back to back: a catch-up of a 45-65 s programme is
mostly its first and last window, a session's backlog is minutes long.

To measure the policy before streaming commits: run the same script with PYTHONPATH pointing
at an older checkout's src/ (`--old` labels its rows).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import jiwer
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

from cht import events as ev
from cht.analyze.reader import PcmChunk
from cht.config import RecordOptions
from cht.transcribe.chunker import RATE
from cht.transcribe.engine import SpeechEngine
from cht.transcribe.model import SpeechModel, default_model_dir
from cht.transcribe.store import TranscriptStore
from cht.transcribe.worker import TranscribeOptions, Transcriber
from lecture_text import PARAGRAPHS as LECTURE
from neural_voice import GAP_S, voiced

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
HUMAN = {  # what is said in the media, for the WER against people rather than the model
    "jfk": "and so my fellow americans ask not what your country can do for you "
           "ask what you can do for your country",
    "beckett": "ever tried ever failed no matter try again fail again fail better",
}
PARAGRAPHS = [
    "The committee met on Tuesday to discuss the budget for next year, and most of the members agreed "
    "that the library needs a new roof, although several of them wanted to wait until the spring, when "
    "the prices of building materials usually fall",
    "After the meeting, the chairman walked down to the river with two of his colleagues, and they talked "
    "about the new bridge, the traffic in the old town, and the school that will open in September, "
    "because the children of the village have to travel for almost an hour every morning",
    "Nobody expected the weather to change so quickly, but by the evening the wind had turned to the north, "
    "the temperature had dropped by ten degrees, and the first snow of the winter was falling on the hills",
]


def clips() -> list[tuple[np.ndarray, str]]:
    import moonshine_onnx

    files = sorted(p for p in MEDIA.glob("*") if p.suffix in (".flac", ".wav", ".mp3", ".ogg")) if MEDIA.exists() else []
    files.append(Path(moonshine_onnx.__file__).parent / "assets" / "beckett.wav")
    return [(decode_audio(str(path)), HUMAN.get(path.stem, "")) for path in files]


def espeak(text: str, voice: str = "en") -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(wav), text], check=True)
        return decode_audio(str(wav))


NOISE_SNR_DB = 10.0  # the noisy programme's speech-to-noise ratio


def programme(name: str, tile: int = 1) -> tuple[np.ndarray, str]:
    audio, human = _programme(name)
    return np.concatenate([audio] * tile), " ".join([human] * tile)


def _programme(name: str) -> tuple[np.ndarray, str]:
    if name in ("synthetic", "lecture"):
        parts = [(espeak(p), p) for p in (PARAGRAPHS if name == "synthetic" else LECTURE)]
        gap, repeat, lead = GAP_S, 1, 0.5
    elif name in ("voiced", "noisy"):
        parts = [(voiced(p), p) for p in LECTURE]
        gap, repeat, lead = GAP_S, 1, 0.5
    else:
        parts = clips()
        gap, repeat, lead = (1.5, 2, 1.5) if name == "pause-rich" else (GAP_S, 3, 0.5)
    silence = np.zeros(int(gap * RATE), np.float32)
    audio, human = [np.zeros(int(lead * RATE), np.float32)], []
    for _ in range(repeat):
        for pcm, text in parts:
            audio += [pcm, silence]
            human.append(text)
    audio.append(np.zeros(int(1.0 * RATE), np.float32))
    audio = np.concatenate(audio)
    return with_noise(audio) if name == "noisy" else audio, normalise(" ".join(human))


def with_noise(speech: np.ndarray) -> np.ndarray:
    """`speech` under pink noise (power falling 3 dB an octave), `NOISE_SNR_DB` below the
    speech's own power where it speaks."""
    rng = np.random.default_rng(20)
    spectrum = np.fft.rfft(rng.standard_normal(len(speech)))
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(len(speech), 1 / RATE), 20.0))
    noise = np.fft.irfft(spectrum, len(speech))
    voiced_power = np.mean(speech[np.abs(speech) > 0.01] ** 2)
    noise *= np.sqrt(voiced_power / np.mean(noise ** 2) / 10 ** (NOISE_SNR_DB / 10))
    return np.clip(speech + noise, -1.0, 1.0).astype(np.float32)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def transcript_text(lines) -> str:
    """What a run's lines say, in time order, normalised for WER."""
    return normalise(" ".join(line.text for line in sorted(lines, key=lambda x: x.start)))


def offline_reference(model_dir: Path, audio: np.ndarray) -> tuple[list[dict], float]:
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)
    began = time.perf_counter()
    segments, _ = model.transcribe(audio, language="en", beam_size=5, word_timestamps=True)
    words = [{"word": normalise(w.word), "start": w.start, "end": w.end} for s in segments for w in s.words]
    return [w for w in words if w["word"]], time.perf_counter() - began


def options(kind: str, language: str | None) -> TranscribeOptions:
    names = {f.name for f in fields(TranscribeOptions)}
    if kind == "live":
        return TranscribeOptions(language=language)
    if kind == "chunk-ends":  # the policy before streaming commit: words final at each chunk's end
        return TranscribeOptions(language=language, step_s=None)
    from cht.offline import OFFLINE_TRANSCRIBE

    return TranscribeOptions(**{**{k: getattr(OFFLINE_TRANSCRIBE, k) for k in names}, "language": language})


def run(engine: SpeechEngine, audio: np.ndarray, kind: str, language: str | None = "en"):
    """Feed the programme (real pace unless a catch-up); return final events with wall times,
    the transcriber, the wall time of global 0, wall seconds and process CPU seconds."""
    bus = ev.EventBus()
    seen: list[tuple[float, ev.TranscriptSegments]] = []
    bus.subscribe(lambda e: seen.append((time.monotonic(), e)) if isinstance(e, ev.TranscriptSegments) else None)
    pcm = (audio * 32767).astype(np.int16)
    step = round(RecordOptions().fragment_s * RATE)
    live = kind != "catch-up"
    tmp = Path(tempfile.mkdtemp())
    try:
        transcriber = Transcriber(engine, TranscriptStore(tmp), bus, options(kind, language))
        transcriber.start()
        cpu0, t0 = time.process_time(), time.monotonic()
        for i in range(0, len(pcm), step):
            piece = pcm[i:i + step]
            if live:
                time.sleep(max(0.0, t0 + (i + len(piece)) / RATE - time.monotonic()))  # it exists once spoken
            transcriber.feed(PcmChunk(i / RATE, piece))
        transcriber.stop()
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
        lines = TranscriptStore(tmp).read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [s for s in seen if s[1].final], transcriber, t0, wall, cpu, lines


def latencies(reference: list[dict], seen, t0: float) -> list[float]:
    """Per reference word: wall time of the first committed line holding it, minus the moment
    it had been spoken. A line holds a reference word if the word was spoken within the line's
    audio span and the line's text has it."""
    final: dict[int, float] = {}
    for wall, event in seen:
        for line in event.lines:
            tokens = normalise(line.text).split()
            a, b = line.span
            for i, ref in enumerate(reference):
                if i not in final and a - 0.3 <= ref["start"] <= b + 0.3 and ref["word"] in tokens:
                    tokens.remove(ref["word"])
                    final[i] = wall
    return [final[i] - (t0 + reference[i]["end"]) for i in final]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programmes", default="pause-rich,continuous,synthetic")
    parser.add_argument("--runs", default="live,catch-up")
    parser.add_argument("--old", action="store_true", help="label rows as the old policy (PYTHONPATH=old src)")
    parser.add_argument("--language", default="en",
                        help="the session's language, or 'detect' to let the model find it (what cht does unpinned)")
    parser.add_argument("--tile", type=int, default=1, help="play each programme this many times back to back")
    opts = parser.parse_args()
    language = None if opts.language == "detect" else opts.language
    model_dir = default_model_dir(Path(tempfile.gettempdir()) / "cht-bench-cache")
    engine = SpeechEngine(SpeechModel(model_dir))
    label = "old policy" if opts.old else "cht"
    rows = []
    for name in opts.programmes.split(","):
        if name in ("synthetic", "lecture") and not shutil.which("espeak-ng"):
            print(f"{name}: espeak-ng is not installed, skipped", file=sys.stderr)
            continue
        audio, human = programme(name, opts.tile)
        seconds = len(audio) / RATE
        print(f"{name}: {seconds:.1f} s; offline reference...", file=sys.stderr)
        reference, offline_s = offline_reference(model_dir, audio)
        ref_text = " ".join(w["word"] for w in reference)
        rows.append((name, "faster-whisper transcribe() (reference)", "", "", f"{offline_s / seconds:.3f}", "",
                     f"{offline_s:.1f}", "(itself)", f"{jiwer.wer(human, ref_text):.1%}"))
        for kind in opts.runs.split(","):
            live = kind != "catch-up"
            print(f"  {kind}...", file=sys.stderr)
            seen, transcriber, t0, wall, cpu, lines = run(engine, audio, kind, language)
            lat = latencies(reference, seen, t0) if live else []
            text = transcript_text(lines)
            rows.append((name, f"{label} {kind}" + (" (language detected)" if language is None else ""),
                         f"{pct(lat, 50):.2f}" if live else "",
                         f"{pct(lat, 95):.2f}" if live else "", f"{transcriber.busy_s / seconds:.3f}",
                         f"{cpu / seconds:.3f}", f"{wall:.1f}", f"{jiwer.wer(ref_text, text):.1%}",
                         f"{jiwer.wer(human, text):.1%}"))
            print(f"    {len(lat)}/{len(reference)} words committed; lines {len([x for x in lines if x.text])}; "
                  f"steps {getattr(transcriber, 'steps', 0)} ({getattr(transcriber, 'step_busy_s', 0):.1f} s); "
                  f"max latency {max(lat, default=0):.2f} s; retries {engine.model.retries}\n    {text}",
                  file=sys.stderr)
    print(f"\nWhisper base int8, {os.cpu_count()} threads, {platform.processor() or platform.machine()}\n")
    print("| speech | run | committed median s | committed p95 s | RTF | CPU s per s | wall s | WER vs offline | WER vs human |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
