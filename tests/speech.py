"""Real speech for the transcription tests: beckett.wav (from the useful-moonshine-onnx
wheel) placed at known offsets in a generated A/V file, and two kinds of truth about it:
- `beckett_words()`: the words and their times from faster-whisper's own offline transcript of
  the clean wav with the same model: for regressions and timing (it cannot say the model is right);
- `HUMAN`: what people hear in beckett.wav and ../shared/media/jfk.flac, for accuracy
  (`word_error_rate`); tests/test_accuracy.py checks the model's truth against it."""

from __future__ import annotations

import re
import subprocess
import time
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

from cht.config import default_cache_dir
from cht.media.ffmpeg import ffmpeg_exe

RATE = 16_000
HUMAN = {  # what is said, as a person writes it down (lower case, no punctuation)
    "beckett": "ever tried ever failed no matter try again fail again fail better",  # Worstward Ho
    "jfk": "and so my fellow americans ask not what your country can do for you "
           "ask what you can do for your country",  # inaugural address, 1961
}


def beckett_path() -> Path:
    import moonshine_onnx

    return Path(moonshine_onnx.__file__).parent / "assets" / "beckett.wav"


def beckett() -> np.ndarray:
    with wave.open(str(beckett_path())) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def jfk_path() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "media" / "jfk.flac"


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words in the reference, over normalised words."""
    ref, hyp = [norm(w) for w in reference.split() if norm(w)], [norm(w) for w in hypothesis.split() if norm(w)]
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


def model_dir() -> Path:
    from cht.transcribe.model import default_model_dir

    return default_model_dir(default_cache_dir())


@lru_cache(maxsize=1)
def beckett_words() -> tuple[tuple[str, float, float], ...]:
    """(word, start, end) in beckett.wav: the words and their ends from faster-whisper with
    its usual 30 s window, the starts from the signal (Whisper starts a word after a pause
    at the start of the pause: here up to 0.6 s early)."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir()), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(str(beckett_path()), language="en", beam_size=5, word_timestamps=True)
    pcm = beckett().astype(np.float64)
    return tuple((norm(w.word), onset(pcm, w.start, w.end), w.end)
                 for s in segments for w in s.words if norm(w.word))


def onset(pcm: np.ndarray, start: float, end: float, frame_s: float = 0.02) -> float:
    """The first 20 ms frame in [start, end) louder than a quarter of the word's loudest."""
    frame = int(frame_s * RATE)
    a, b = int(start * RATE), int(end * RATE)
    rms = [np.sqrt(np.mean(pcm[i:i + frame] ** 2)) for i in range(a, max(a + frame, b - frame), frame)]
    loud = next(i for i, r in enumerate(rms) if r >= 0.25 * max(rms))
    return start + loud * frame_s


def norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def same_word(a: str, b: str) -> bool:
    """Whisper sometimes hears "fail" as "failed": a prefix counts as the same word."""
    return a == b or (min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a)))


def speech_wav(path: Path, offsets: list[float], seconds: float) -> Path:
    """A WAV of silence with beckett.wav at each offset."""
    pcm = np.zeros(int(seconds * RATE), np.int16)
    speech = beckett()
    for offset in offsets:
        i = int(offset * RATE)
        pcm[i:i + len(speech)] = speech[: len(pcm) - i]
    return write_wav(path, pcm)


def write_wav(path: Path, pcm: np.ndarray) -> Path:
    """16 kHz mono int16 PCM as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return path


def make_speech_video(path: Path, offsets: list[float], seconds: float) -> list[tuple[str, float, float]]:
    """A 640x360 test pattern with beckett.wav at each offset; returns the true words."""
    truth = [(w, offset + a, offset + b) for offset in offsets for w, a, b in beckett_words()]
    wav = speech_wav(path.with_suffix(".wav"), offsets, seconds)
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
                    "-f", "lavfi", "-i", f"testsrc2=s=640x360:r=25:d={seconds}", "-i", str(wav),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", str(path)], check=True)
    return truth


def transcript_words(session_dir: Path) -> list[tuple[str, float, float]]:
    from cht.transcribe.store import read_lines

    return [(norm(w.word), w.start, w.end)
            for line in read_lines(session_dir / "transcript.jsonl") for w in line.words if norm(w.word)]


def match(truth, heard, tolerance: float = 0.5) -> dict[int, list[int]]:
    """For each true word, the heard words that are the same word, starting and ending
    within `tolerance` of the truth."""
    return {i: [j for j, (h, hs, he) in enumerate(heard)
                if same_word(w, h) and abs(hs - ts) <= tolerance and abs(he - te) <= tolerance]
            for i, (w, ts, te) in enumerate(truth)}


@lru_cache(maxsize=1)
def engine():
    """One speech engine for every test of a pytest process, as one `cht` process has."""
    from cht.transcribe.engine import SpeechEngine
    from cht.transcribe.model import SpeechModel

    return SpeechEngine(SpeechModel(model_dir()))


def live_recording(session, source_spec: str, bus, cache_dir: Path, *, speech=None, language: str | None = "en",
                   stages: tuple[str, ...] = ("scenes", "waveform", "transcript"), fast: bool = False):
    """What `cht record` runs in its process: the recorder and a follower of its files."""
    from cht.config import RecordOptions
    from cht.record.sources import parse_source
    from cht.recording import build_recording
    from cht.stages import StageConfig
    from cht.transcribe.worker import TranscribeOptions

    config = StageConfig(engine=speech or engine(), transcribe=TranscribeOptions(language=language))
    return build_recording(session, parse_source(source_spec), RecordOptions(fast=fast), bus, cache_dir=cache_dir,
                           stages=stages, config=config)


class SlowModel:
    """The real model, made slower than real time: the fault of a CPU that cannot keep up.
    It also records when each call ran, to prove no two ever overlap."""

    def __init__(self, model, extra_s: float) -> None:
        self.model, self.extra_s = model, extra_s
        self.calls: list[tuple[float, float]] = []

    def transcribe(self, audio, **kwargs):
        return self._timed(self.model.transcribe, audio, **kwargs)

    def transcribe_batch(self, audios, **kwargs):
        return self._timed(self.model.transcribe_batch, audios, **kwargs)

    def _timed(self, method, *args, **kwargs):
        began = time.monotonic()
        try:
            time.sleep(self.extra_s)
            return method(*args, **kwargs)
        finally:
            self.calls.append((began, time.monotonic()))

