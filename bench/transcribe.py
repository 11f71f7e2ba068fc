"""Live transcription: latency, real-time factor and word error rate, in one run.

Real speech (every file in ../shared/media/, else the wheel's beckett.wav, twice each with
pauses) is fed to cht's transcriber at real pace, the way the recorder delivers it (1 s
fragments) and in 0.1 s pieces (the transcriber alone). Measured per spoken word: the time
from its end to the first text that contains it (provisional or final) and to its final
text. The reference for word times and WER is faster-whisper's own offline transcript of
the same audio with the same model (beam 5, 30 s windows); the WER against a human
reference is given where the media has one.

    python bench/transcribe.py [--pieces 1.0,0.1]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

from cht import events as ev
from cht.analyze.reader import PcmChunk
from cht.transcribe.chunker import RATE, ChunkPolicy
from cht.transcribe.model import SpeechModel, default_model_dir
from cht.transcribe.store import TranscriptStore
from cht.transcribe.worker import TranscribeOptions, Transcriber

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
HUMAN = {  # what is said in the media, for the WER against people rather than the model
    "jfk": "and so my fellow americans ask not what your country can do for you "
           "ask what you can do for your country",
    "beckett": "ever tried ever failed no matter try again fail again fail better",
}
PAUSE_S = 1.5


def speech() -> tuple[np.ndarray, str]:
    """The programme: each real recording twice, with pauses; and its human text."""
    import moonshine_onnx

    files = sorted(p for p in MEDIA.glob("*") if p.suffix in (".flac", ".wav", ".mp3", ".ogg")) if MEDIA.exists() else []
    files.append(Path(moonshine_onnx.__file__).parent / "assets" / "beckett.wav")
    pause = np.zeros(int(PAUSE_S * RATE), np.float32)
    parts, human = [pause], []
    for _ in range(2):
        for path in files:
            parts += [decode_audio(str(path)), pause]
            human.append(HUMAN.get(path.stem, ""))
    return np.concatenate(parts), " ".join(human)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def offline_reference(model_dir: Path, audio: np.ndarray) -> tuple[list[dict], float]:
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)
    began = time.perf_counter()
    segments, _ = model.transcribe(audio, language="en", beam_size=5, word_timestamps=True)
    words = [{"word": normalise(w.word), "start": w.start, "end": w.end} for s in segments for w in s.words]
    return [w for w in words if w["word"]], time.perf_counter() - began


def live(model: SpeechModel, audio: np.ndarray, piece_s: float, options: TranscribeOptions):
    """Feed at real pace; return (events with wall times, transcriber, start wall time)."""
    bus = ev.EventBus()
    seen: list[tuple[float, ev.TranscriptSegments]] = []
    lags: list[float] = []

    def listen(event: ev.Event) -> None:
        if isinstance(event, ev.TranscriptSegments):
            seen.append((time.monotonic(), event))
        elif isinstance(event, ev.TranscriptLag):
            lags.append(event.lag_s)

    bus.subscribe(listen)
    pcm = (audio * 32767).astype(np.int16)
    step = int(piece_s * RATE)
    with tempfile.TemporaryDirectory() as tmp:
        transcriber = Transcriber(model, TranscriptStore(Path(tmp)), bus, options)
        transcriber.start()
        t0 = time.monotonic()
        for i in range(0, len(pcm), step):
            piece = pcm[i:i + step]
            time.sleep(max(0.0, t0 + (i + len(piece)) / RATE - time.monotonic()))  # it exists once spoken
            transcriber.feed(PcmChunk(i / RATE, piece))
        transcriber.stop()
    return seen, transcriber, t0, lags


def recorded(model: SpeechModel, audio: np.ndarray):
    """The whole path: `cht record` of an A/V file holding the speech, at real pace (ffmpeg
    writes 1 s fragments, the analyzer polls and decodes them, then the transcriber)."""
    import subprocess
    import wave

    from cht.config import RecordOptions
    from cht.lifecycle import Lifecycle
    from cht.media.ffmpeg import ffmpeg_exe
    from cht.record.sources import parse_source
    from cht.session import Session

    seen: list[tuple[float, ev.TranscriptSegments]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with wave.open(str(tmp / "speech.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes((audio * 32767).astype(np.int16).tobytes())
        subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                        f"testsrc2=s=640x360:r=25:d={len(audio) / RATE}", "-i", str(tmp / "speech.wav"),
                        "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-shortest",
                        str(tmp / "speech.mp4")], check=True)
        bus = ev.EventBus()
        bus.subscribe(lambda e: seen.append((time.time(), e)) if isinstance(e, ev.TranscriptSegments) else None)
        session = Session.create(tmp / "data", "bench")
        life = Lifecycle(session, parse_source(str(tmp / "speech.mp4")), RecordOptions(), bus,
                         cache_dir=tmp / "cache", speech=model)
        life.start()
        life.wait()
        t0 = session.read_run_note(0)  # wall clock of the first media: global time 0
        return seen, life.transcriber, t0


def latencies(reference: list[dict], seen, t0: float) -> tuple[list[float], list[float]]:
    """Per reference word: wall time of the first (and the first final) text holding it,
    minus the moment it had been spoken. A line holds a reference word if the word was
    spoken within the line's audio span and the line's text has it."""
    first: dict[int, float] = {}
    final: dict[int, float] = {}
    for wall, event in seen:
        for line in event.lines:
            tokens = normalise(line["text"]).split()
            a, b = line["span"]
            for i, ref in enumerate(reference):
                if a - 0.3 <= ref["start"] <= b and ref["word"] in tokens:
                    tokens.remove(ref["word"])
                    first.setdefault(i, wall)
                    if event.final:
                        final.setdefault(i, wall)
    spoken = lambda i: t0 + reference[i]["end"]  # noqa: E731
    return [first[i] - spoken(i) for i in first], [final[i] - spoken(i) for i in final]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pieces", default="1.0,0.1", help="seconds of audio per delivery, comma-separated")
    parser.add_argument("--min-chunk", type=float, default=ChunkPolicy().min_s)
    parser.add_argument("--pause", type=float, default=ChunkPolicy().pause_s)
    parser.add_argument("--provisional", type=float, default=TranscribeOptions(ChunkPolicy()).provisional_every_s)
    parser.add_argument("--beam", type=int, default=TranscribeOptions(ChunkPolicy()).beam_size)
    opts = parser.parse_args()
    model_dir = default_model_dir(Path(tempfile.gettempdir()) / "cht-bench-cache")
    audio, human = speech()
    seconds = len(audio) / RATE
    print(f"{seconds:.1f} s of speech; offline reference...", file=sys.stderr)
    reference, offline_s = offline_reference(model_dir, audio)
    ref_text = " ".join(w["word"] for w in reference)
    rows = [("faster-whisper offline (reference)", "", "", "", "", f"{offline_s / seconds:.3f}",
             "(itself)", f"{jiwer.wer(human, ref_text):.1%}" if human.strip() else "n/a")]
    model = SpeechModel(model_dir, language="en")
    policy = ChunkPolicy(min_s=opts.min_chunk, pause_s=opts.pause)
    options = TranscribeOptions(policy, provisional_every_s=opts.provisional or None, beam_size=opts.beam)
    for piece in (float(p) for p in opts.pieces.split(",")):
        print(f"live, {piece:g} s pieces...", file=sys.stderr)
        seen, transcriber, t0, lags = live(model, audio, piece, options)
        first, final = latencies(reference, seen, t0)
        text = " ".join(normalise(line["text"]) for _, e in seen if e.final for line in e.lines)
        rows.append((f"cht live, {piece:g} s pieces", f"{pct(first, 50):.2f}", f"{pct(first, 95):.2f}",
                     f"{pct(final, 50):.2f}", f"{pct(final, 95):.2f}", f"{transcriber.busy_s / seconds:.3f}",
                     f"{jiwer.wer(ref_text, text):.1%}", f"{jiwer.wer(human, text):.1%}" if human.strip() else "n/a"))
        print(f"  {len(final)}/{len(reference)} words final; chunks {transcriber.chunks_transcribed}; "
              f"full-window retries {model.retries}; max lag {max(lags, default=0):.1f} s", file=sys.stderr)
        print("  " + text, file=sys.stderr)
    print("cht record, the whole path...", file=sys.stderr)
    seen, transcriber, t0 = recorded(model, audio)
    first, final = latencies(reference, seen, t0)
    text = " ".join(normalise(line["text"]) for _, e in seen if e.final for line in e.lines)
    rows.append(("cht record (ffmpeg, 1 s fragments, analyzer)", f"{pct(first, 50):.2f}", f"{pct(first, 95):.2f}",
                 f"{pct(final, 50):.2f}", f"{pct(final, 95):.2f}", f"{transcriber.busy_s / seconds:.3f}",
                 f"{jiwer.wer(ref_text, text):.1%}", f"{jiwer.wer(human, text):.1%}" if human.strip() else "n/a"))
    print("  " + text, file=sys.stderr)
    print(f"\n{seconds:.0f} s of real speech, Whisper base int8, {os.cpu_count()} threads, {platform.processor() or platform.machine()}, "
          f"min chunk {policy.min_s:g} s, pause {policy.pause_s:g} s, "
          f"provisional every {options.provisional_every_s} s, beam {options.beam_size}\n")
    print("| run | first text median s | first p95 s | final text median s | final p95 s | RTF | WER vs offline | WER vs human |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
