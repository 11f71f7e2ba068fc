"""Cut a stream of PCM into chunks that end in silence, each knowing its global times.

Audio arrives in pieces stamped with global time. The chunker concatenates them and keeps
*marks* (sample offset -> global time) wherever the stamps jump, so a chunk that spans a
segment boundary still maps every word to the right global time. A chunk ends:
- in a pause (VAD) once it holds `min_s` of audio,
- at its quietest point once it reaches `max_s`,
- at a gap in the recording (an outage), where the next audio is unrelated: a word cut by
  the outage must not be glued to the first word after it,
- when flushed (stop, end of source).
Stretches without speech become silent chunks that are never sent to the model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from cht.transcribe.vad import RATE, SPEECH_P, WINDOW, StreamingVad, has_speech

WINDOW_S = WINDOW / RATE
SILENCE_P = 0.35  # ... below which it is silence (hysteresis between the two)
LEAD_IN_S = 0.3  # silence kept before speech: onsets are soft
TAIL_S = 0.2  # silence kept after the last speech in a chunk
TAIL_WINDOWS = round(TAIL_S / WINDOW_S)  # ... in VAD windows
JUMP_S = 0.02  # a stamp this far from the expected time gets a mark of its own
GAP_S = 0.5  # a jump this long is an outage: the chunk ends there
LONG_PAUSE_S = 1.0  # a pause this long ends a chunk however short: the phrase is over


@dataclass
class Chunk:
    id: int
    audio: np.ndarray  # float32 PCM, RATE
    marks: list[tuple[int, float]]  # (sample offset, global seconds), first at offset 0
    speech: bool
    probs: list[float] = field(default_factory=list)  # VAD speech probability per window

    def onset(self, start: float, end: float) -> float:
        """A word's start moved to where the VAD hears speech begin: Whisper puts the first
        word after a silence at the start of that silence."""
        k = int(start / WINDOW_S)
        while k < len(self.probs) and self.probs[k] < SILENCE_P and (k + 1) * WINDOW_S < end - 0.05:
            k += 1
        return max(start, min(k * WINDOW_S, end))

    def heard(self, start: float, end: float) -> bool:
        """Does the VAD hear speech anywhere between `start` and `end` (seconds into the
        chunk)? Audio after the last whole VAD window is not judged yet: heard."""
        a, b = int(start / WINDOW_S), int(end / WINDOW_S) + 1
        return b > len(self.probs) or max(self.probs[a:b]) >= SILENCE_P

    @property
    def ends_in_pause(self) -> bool:
        """Did the speech end before the chunk (cut `TAIL_S` into a pause), or was it cut
        mid-speech (a stop, an outage, a chunk grown to `max_s`)?"""
        return len(self.probs) >= TAIL_WINDOWS and max(self.probs[-TAIL_WINDOWS:]) < SILENCE_P

    def softest(self, start: float, end: float) -> float:
        """The global time of the quietest 10 ms of audio between global `start` and `end`
        (between two words, where the VAD hears no pause: a comma in fluent speech)."""
        frame = RATE // 100
        a = max(0, round((start - self.start) * RATE))
        n = max(1, (min(len(self.audio), round((end - self.start) * RATE)) - a) // frame)
        frames = self.audio[a: a + n * frame]
        if len(frames) < n * frame:
            return self.to_global(a / RATE)
        energy = np.square(frames.reshape(n, frame)).mean(axis=1)
        return self.to_global((a + int(np.argmin(energy)) * frame + frame // 2) / RATE)

    def to_global(self, seconds: float) -> float:
        """Global time of a point `seconds` into the chunk's audio."""
        offset = seconds * RATE
        base_offset, base_t = self._mark_before(offset, 0)
        return base_t + (offset - base_offset) / RATE

    def to_local(self, t: float) -> float:
        """Seconds into the chunk's audio of global time `t` (the inverse of `to_global`)."""
        base_offset, base_t = self._mark_before(t, 1)
        return base_offset / RATE + t - base_t

    def _mark_before(self, at: float, by: int) -> tuple[int, float]:
        """The mark in force at `at`: a sample offset (`by` 0) or a global time (`by` 1)."""
        base = self.marks[0]
        for mark in self.marks[1:]:
            if mark[by] > at:
                break
            base = mark
        return base

    @property
    def start(self) -> float:
        return self.marks[0][1]

    @property
    def end(self) -> float:
        return self.to_global(len(self.audio) / RATE)

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


@dataclass
class ChunkPolicy:
    min_s: float = 2.5  # TRANSCRIBE_MIN_CHUNK_S: a pause ends a chunk only after this much audio
    max_s: float = 15.0  # a chunk never grows longer: it is cut at its quietest point
    pause_s: float = 0.35  # silence that counts as a pause between phrases


@dataclass
class Chunker:
    policy: ChunkPolicy = field(default_factory=ChunkPolicy)
    first_id: int = 0

    def __post_init__(self) -> None:
        self._fed_end: float | None = None  # see `received_end`
        self._vad = StreamingVad()
        self._ids = itertools.count(self.first_id)
        self._new_buffer()

    def _new_buffer(self, keep: np.ndarray | None = None, marks=None, probs=None) -> None:
        self._audio: list[np.ndarray] = [] if keep is None or not len(keep) else [keep]
        self._length = 0 if keep is None else len(keep)
        self._marks: list[tuple[int, float]] = marks or []
        self._probs: list[float] = list(probs) if probs is not None else []
        self._id = next(self._ids)

    @property
    def received_end(self) -> float | None:
        """Global time just after the last sample fed, kept when a flush empties the buffer:
        the transcriber's lag is measured to it. (It was the buffer's end: once the end of a
        source flushed the buffer, a session draining five minutes of queued audio reported
        no lag, to `cht status` and in its events, and its index no pending stretch.)"""
        return self._fed_end

    def _buffer_end(self) -> float | None:
        """Global time just after the buffered audio (None: nothing buffered)."""
        if not self._marks:
            return None
        offset, t = self._marks[-1]
        return t + (self._length - offset) / RATE

    def feed(self, t: float, samples: np.ndarray) -> list[Chunk]:
        """Add int16 (or float32) PCM starting at global time `t`; return the chunks it closes."""
        audio = samples.astype(np.float32) / 32768.0 if samples.dtype == np.int16 else samples.astype(np.float32)
        closed: list[Chunk] = []
        expected = self._buffer_end()
        if expected is not None and abs(t - expected) > GAP_S:
            closed += self.flush()
            self._vad.reset()
            expected = None
        if expected is None or abs(t - expected) > JUMP_S:
            self._marks.append((self._length, t))
        self._audio.append(audio)
        self._length += len(audio)
        self._fed_end = self._buffer_end()
        self._probs.extend(self._vad.feed(audio).tolist())
        while (chunk := self._cut()) is not None:
            closed.append(chunk)
        return closed

    def flush(self) -> list[Chunk]:
        """Close whatever is buffered (stop, end of source, an outage)."""
        if not self._length:
            return []
        chunk = self._take(self._length)
        self._vad.reset()
        self._probs = []
        return [chunk]

    def drop_before(self, t: float) -> Chunk | None:
        """Set aside the buffered audio before global time `t` (its words are committed, see
        `worker`): the next decodes of the phrase being spoken start there. Returns what was
        set aside, None when `t` is not inside the buffer."""
        if not self._length or not self._marks:
            return None
        offset = self._offset_of(t)
        if offset is None:
            return None
        samples = (offset // WINDOW) * WINDOW  # whole VAD windows, so `probs` stays aligned
        if samples <= 0 or samples >= self._length:
            return None
        return self._take(samples)

    def _offset_of(self, t: float) -> int | None:
        """The sample offset of global time `t` in the buffer (None: not in it)."""
        offsets = [o for o, _ in self._marks] + [self._length]
        for (o, mark_t), next_o in zip(self._marks, offsets[1:]):
            offset = o + round((t - mark_t) * RATE)
            if o <= offset < next_o:
                return offset
        return None

    def running(self) -> Chunk | None:
        """A copy of the chunk being gathered, if it holds speech (for a provisional text)."""
        if not self._length or not has_speech(self._probs):
            return None
        return Chunk(self._id, np.concatenate(self._audio), list(self._marks), True, list(self._probs))

    # -- where to cut --

    def _cut(self) -> Chunk | None:
        probs = self._probs
        n = len(probs)
        if not n:
            return None
        seconds = n * WINDOW_S
        lead_in = round(LEAD_IN_S / WINDOW_S)
        if not has_speech(probs):
            if seconds >= self.policy.min_s + LEAD_IN_S + 1.0:  # a stretch of silence: set it aside
                return self._take((n - lead_in) * WINDOW)
            return None
        pause = self._first_pause(probs)
        if pause is not None:
            return self._take(pause * WINDOW)
        if seconds >= self.policy.max_s:
            return self._take(self._quietest(probs) * WINDOW)
        return None

    def _first_pause(self, probs: list[float]) -> int | None:
        """The window to cut at in the first pause after speech that leaves `min_s` of audio
        before the cut (or that lasts `LONG_PAUSE_S`): `TAIL_S` into the pause. A pause is
        `pause_s` without speech, in the middle of the new audio or at its end (audio
        arrives a fragment at a time)."""
        need = round(self.policy.pause_s / WINDOW_S)
        spoken = quiet_from = None
        for i, p in enumerate(probs):
            if p >= SILENCE_P:
                if p >= SPEECH_P:
                    spoken = True
                quiet_from = None
                continue
            if quiet_from is None:
                quiet_from = i
            if spoken and i + 1 - quiet_from >= need:
                cut = quiet_from + TAIL_WINDOWS
                if cut * WINDOW_S >= self.policy.min_s or (i + 1 - quiet_from) * WINDOW_S >= LONG_PAUSE_S:
                    return cut
        return None

    @staticmethod
    def _quietest(probs: list[float]) -> int:
        """The window in the second half where a short running mean of speech is lowest."""
        smooth = np.convolve(np.asarray(probs), np.ones(5) / 5, mode="same")
        half = len(probs) // 2
        return half + int(np.argmin(smooth[half:]))

    def _take(self, samples: int) -> Chunk:
        """Split the buffer at `samples`: the part before becomes a chunk, the rest stays."""
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
        head, rest = audio[:samples], audio[samples:]
        head_marks = [(o, t) for o, t in self._marks if o < samples] or [(0, self._marks[0][1])]
        probs = self._probs[: samples // WINDOW]
        chunk = Chunk(self._id, head, head_marks, has_speech(probs), probs)
        rest_marks = [(o - samples, t) for o, t in self._marks if o >= samples]
        if len(rest) and (not rest_marks or rest_marks[0][0] > 0):
            rest_marks.insert(0, (0, chunk.to_global(samples / RATE)))
        self._new_buffer(rest, rest_marks, self._probs[samples // WINDOW:])
        return chunk
