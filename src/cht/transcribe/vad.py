"""Streaming voice activity: Silero VAD (the ONNX model faster-whisper ships), fed as audio
arrives, its recurrent state carried from one call to the next.

faster-whisper's own VAD runs over a whole file; a live chunker needs the speech
probability of each new 32 ms window as it comes, without re-reading the past.
"""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_vad_model

RATE = 16_000  # samples a second the model takes
WINDOW = 512  # samples at 16 kHz: 32 ms, the window the model was trained on
CONTEXT = 64  # samples of the previous window the model sees before each window
SPEECH_P = 0.5  # a window this likely to be speech is speech
MIN_SPEECH_S = 0.2  # less speech than this is a click, not a word


class StreamingVad:
    def __init__(self) -> None:
        self._session = get_vad_model().session
        self.reset()

    def reset(self) -> None:
        """Forget the past: after a gap the next audio has nothing to do with the last."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)

    def feed(self, audio: np.ndarray) -> np.ndarray:
        """Speech probabilities of the complete windows the new float32 samples finish."""
        audio = np.concatenate([self._rest, audio])
        n = len(audio) // WINDOW
        self._rest = audio[n * WINDOW:]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        windows = audio[: n * WINDOW].reshape(n, WINDOW)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        self._context = windows[-1, -CONTEXT:].copy()
        batch = np.concatenate([contexts, windows], axis=1)
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        return out.reshape(-1).astype(np.float32)


def has_speech(probs) -> bool:
    """Do these windows' speech probabilities add up to `MIN_SPEECH_S` of speech?"""
    return sum(p >= SPEECH_P for p in probs) * WINDOW / RATE >= MIN_SPEECH_S


def holds_speech(audio: np.ndarray) -> bool:
    """Does this float32 PCM hold `MIN_SPEECH_S` of speech, heard on its own?"""
    return has_speech(StreamingVad().feed(audio))
