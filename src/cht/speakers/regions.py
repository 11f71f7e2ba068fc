"""Speech regions from streaming Silero VAD, cut into the windows the encoder embeds.

A region opens where speech probability reaches `START_P`, stays open while it is above
`KEEP_P`, and closes after `GAP_S` below it: a pause between two speakers (0.3 s or more)
ends a region, so one region rarely holds two voices. Regions shorter than `MIN_S` say too
little about a voice to embed; long ones are cut into windows of about `WINDOW_S`, each
embedded on its own, so a speaker change inside a long region still shows; speech that goes
on without a pause is handed over a window at a time, so its label comes within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cht.transcribe.vad import WINDOW, StreamingVad

RATE = 16_000
START_P = 0.5
KEEP_P = 0.35
GAP_S = 0.25  # silence that closes a region, seconds
MIN_S = 0.7  # shortest region embedded, seconds (beckett.wav's phrases are 0.7–1 s, and embed well)
WINDOW_S = 3.0  # long regions are embedded in windows about this long, seconds
PAD_S = 0.05  # speech is kept this much beyond the VAD's edges, seconds
BATCH_S = 0.5  # audio gathered before each VAD call, seconds


@dataclass
class Region:
    start: float  # global seconds
    end: float
    audio: np.ndarray  # float32, 16 kHz


def windows(start: float, end: float) -> list[tuple[float, float]]:
    """A region's embedding windows: equal parts of about WINDOW_S (one when shorter)."""
    parts = max(1, int(round((end - start) / WINDOW_S)))
    step = (end - start) / parts
    return [(start + i * step, start + (i + 1) * step) for i in range(parts)]


class RegionFinder:
    """Feed PCM as it comes (`feed(t, samples)`); get back the regions it closes."""

    def __init__(self) -> None:
        self.vad = StreamingVad()
        self._pending: list[np.ndarray] = []  # PCM not yet given to the VAD
        self._pending_t = 0.0  # global time of its first sample
        self._expect: float | None = None  # global time the next chunk should start at
        self._t0: float | None = None  # global time of the first sample in `_audio`
        self._audio = np.zeros(0, np.float32)
        self._next = 0  # index (in VAD windows, from _t0) of the next probability
        self._open: int | None = None  # window index where the open region began
        self._quiet = 0  # windows below KEEP_P since the last speech

    def feed(self, t: float, samples: np.ndarray) -> list[Region]:
        """Regions closed by this PCM. The VAD runs once per `BATCH_S` of audio: one call per
        small chunk costs twice the CPU, and half a second later is soon enough for labels."""
        out: list[Region] = []
        if self._expect is not None and abs(t - self._expect) > 0.1:
            out += self.flush()  # a gap (or a restart): the past has nothing to do with what comes
        if not self._pending:
            self._pending_t = t
        self._pending.append(samples)
        self._expect = t + len(samples) / RATE
        if self._expect - self._pending_t >= BATCH_S:
            out += self._run_vad()
        return out

    def _run_vad(self) -> list[Region]:
        t = self._pending_t
        audio = np.concatenate(self._pending).astype(np.float32) / 32768.0
        self._pending = []
        out: list[Region] = []
        if self._t0 is None:
            self._t0 = t
            self.vad.reset()
        self._audio = np.concatenate([self._audio, audio])
        gap = int(GAP_S * RATE / WINDOW)
        for p in self.vad.feed(audio):
            i = self._next
            self._next += 1
            if self._open is None:
                if p >= START_P:
                    self._open, self._quiet = i, 0
            elif p >= KEEP_P:
                self._quiet = 0
                if (i + 1 - self._open) * WINDOW >= 2 * WINDOW_S * RATE:  # long speech: label it as it goes
                    cut = self._open + int(WINDOW_S * RATE / WINDOW)
                    out += self._close(cut)
                    self._open = cut
            else:
                self._quiet += 1
                if self._quiet >= gap:
                    out += self._close(i - self._quiet + 1)
        self._trim()
        return out

    def flush(self) -> list[Region]:
        """The audio has ended (or jumps): close the open region."""
        out = self._run_vad() if self._pending else []
        out += self._close(self._next) if self._open is not None else []
        self._t0, self._audio, self._next, self._open, self._quiet = None, np.zeros(0, np.float32), 0, None, 0
        self._expect = None
        return out

    def _close(self, end_window: int) -> list[Region]:
        start_window, self._open, self._quiet = self._open, None, 0
        pad = int(PAD_S * RATE)
        a = max(0, start_window * WINDOW - pad)
        b = min(len(self._audio), end_window * WINDOW + pad)
        if (b - a) / RATE < MIN_S:
            return []
        return [Region(self._t0 + a / RATE, self._t0 + b / RATE, self._audio[a:b].copy())]

    def _trim(self) -> None:
        """Keep only the audio an open region (or the next one) may still need."""
        keep_from = (self._open if self._open is not None else self._next) * WINDOW - int(PAD_S * RATE)
        if keep_from > RATE:
            drop = keep_from - RATE // 2
            drop -= drop % WINDOW
            self._audio = self._audio[drop:]
            self._t0 += drop / RATE
            self._next -= drop // WINDOW
            if self._open is not None:
                self._open -= drop // WINDOW
