"""The GE2E speaker encoder (Resemblyzer's network) in numpy: 40-channel mel frames (25 ms
window, 10 ms step, 16 kHz; power, not log) → 3-layer LSTM, 256 hidden → linear 256 → ReLU →
L2 norm. An utterance is cut into 1.6 s partials whose embeddings are averaged, as
Resemblyzer's `embed_utterance` does (the mel frames match librosa's to 1e-7), but the partials
lie side by side rather than 1.3 a second (overlapping): bench/speakers.py measured the same
speaker errors for a third less CPU. Nothing here needs torch.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from cht.speakers import weights

RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL = 160  # frames in a partial utterance: 1.6 s
PARTIALS_PER_S = 0.625  # side by side; Resemblyzer's 1.3 overlaps them: the same errors on the dialogs, a third more CPU
MIN_COVERAGE = 0.75  # a last partial this full is padded and kept
TARGET_DBFS = -30.0  # quiet speech is raised to this (never lowered), as the training data was
HIDDEN = 256


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    linear = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, linear)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters, area-normalised (Slaney)."""
    fft_hz = np.linspace(0, RATE / 2, N_FFT // 2 + 1)
    points = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(RATE / 2), N_MELS + 2))
    widths = np.diff(points)
    ramps = points[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    filters = np.maximum(0, np.minimum(lower, upper))
    filters *= (2.0 / (points[2:] - points[:-2]))[:, None]
    return filters.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power of float32 audio at 16 kHz, centred frames every 10 ms."""
    padded = np.pad(audio.astype(np.float32), N_FFT // 2)
    n = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(padded, (n, N_FFT), (padded.strides[0] * HOP, padded.strides[0]))
    power = np.abs(np.fft.rfft(frames * _window(), axis=1)) ** 2
    return (power.astype(np.float32) @ mel_filters().T).astype(np.float32)


def normalise(audio: np.ndarray) -> np.ndarray:
    """Raise quiet audio to TARGET_DBFS (float32 in −1…1)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    if rms <= 0:
        return audio
    change = TARGET_DBFS - 20 * np.log10(rms)
    return audio * np.float32(10 ** (change / 20)) if change > 0 else audio


def _gates_for_tanh(w_ih: np.ndarray, w_hh: np.ndarray, bias: np.ndarray):
    """torch's gate order (input, forget, cell, output) → (input, forget, output, cell), the three
    sigmoid gates' rows halved: one tanh over all four gates then gives every gate at once."""
    H = HIDDEN
    order = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
    scale = np.r_[np.full(3 * H, 0.5), np.ones(H)].astype(np.float32)
    return ((w_ih[order] * scale[:, None]).T.copy(), (w_hh[order] * scale[:, None]).T.copy(),
            (bias[order] * scale).astype(np.float32))


class Encoder:
    """One loaded network; `embed(audio)` is a 256-d unit vector for one speaker's audio."""

    def __init__(self, path: Path | None = None) -> None:
        p = weights.load(path)
        self.layers = [_gates_for_tanh(p[f"lstm.weight_ih_l{i}"], p[f"lstm.weight_hh_l{i}"],
                                       p[f"lstm.bias_ih_l{i}"] + p[f"lstm.bias_hh_l{i}"]) for i in range(3)]
        self.linear = (p["linear.weight"].T.copy(), p["linear.bias"])

    def forward(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) → (batch, 256) unit embeddings from the last hidden state."""
        x = mels
        batch, steps, _ = x.shape
        H = HIDDEN
        for w_ih, w_hh, bias in self.layers:
            gates_in = x @ w_ih + bias  # every step's input part at once
            h = np.zeros((batch, H), np.float32)
            c = np.zeros((batch, H), np.float32)
            out = np.empty((batch, steps, H), np.float32)
            for t in range(steps):
                g = gates_in[:, t] + h @ w_hh
                np.tanh(g, out=g)  # one call for all four gates (see _gates_for_tanh)
                s = g[:, :3 * H]
                s *= 0.5
                s += 0.5  # sigmoid(x) = (1 + tanh(x / 2)) / 2
                c = s[:, H:2 * H] * c + s[:, :H] * g[:, 3 * H:]
                h = s[:, 2 * H:] * np.tanh(c)
                out[:, t] = h
            x = out
        w, b = self.linear
        e = np.maximum(h @ w + b, 0)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """One utterance (float32 at 16 kHz): the normalised mean of its partials' embeddings."""
        audio = normalise(audio)
        starts = _partial_starts(len(audio))
        need = (starts[-1] + PARTIAL) * HOP
        if need > len(audio):
            audio = np.pad(audio, (0, need - len(audio)))
        mel = mel_frames(audio)
        batch = np.stack([mel[s:s + PARTIAL] for s in starts])
        mean = self.forward(batch).mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


def _partial_starts(samples: int) -> list[int]:
    """Frame offsets of the 1.6 s partials covering `samples`; a last one less than
    MIN_COVERAGE full is dropped unless it is the only one."""
    frames = int(np.ceil((samples + 1) / HOP))
    step = int(round(RATE / PARTIALS_PER_S / HOP))
    starts = list(range(0, max(1, frames - PARTIAL + step + 1), step))
    coverage = (samples - starts[-1] * HOP) / (PARTIAL * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


@lru_cache(maxsize=1)
def shared() -> Encoder:
    """The process's one encoder (read-only weights): every room of `cht ingest` shares it."""
    return Encoder()
