"""Two real voices taking turns, with the truth of who spoke when: jfk.flac (../shared/media)
and beckett.wav (useful-moonshine-onnx), each cut into phrases at its own pauses and the
phrases alternated A B A B … with 0.3–1 s between turns. Synthetic voices are not separable
by the speaker model, so the speaker tests and bench/speakers.py use only these."""

from __future__ import annotations

import subprocess
from functools import lru_cache

import numpy as np

from cht.media.ffmpeg import ffmpeg_exe
from speech import RATE, beckett, jfk_path

GAPS = (0.5, 0.3, 0.8, 0.4, 1.0, 0.6, 0.35, 0.9, 0.45, 0.7)  # seconds between turns


@lru_cache(maxsize=1)
def jfk() -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(jfk_path()), "-f", "s16le", "-ac", "1",
                          "-ar", str(RATE), "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.int16)


def phrases(pcm: np.ndarray, min_pause_s: float = 0.25, min_len_s: float = 0.3) -> list[np.ndarray]:
    """The clip cut at its pauses: stretches whose 20 ms loudness stays under 5 % of the loudest
    for `min_pause_s` or more; what lies between them is a phrase."""
    frame = RATE // 50
    rms = np.sqrt(np.mean(pcm[: len(pcm) // frame * frame].astype(np.float64).reshape(-1, frame) ** 2, axis=1))
    loud = rms > 0.05 * rms.max()
    out, start, quiet = [], None, 0
    for i, on in enumerate(loud):
        if on:
            start = i if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet * frame >= min_pause_s * RATE:
                out.append((start, i - quiet + 1))
                start, quiet = None, 0
    if start is not None:
        out.append((start, len(loud)))
    return [pcm[a * frame:b * frame] for a, b in out if (b - a) * frame >= min_len_s * RATE]


def turns(a: list[np.ndarray], b: list[np.ndarray], count: int) -> list[tuple[str, np.ndarray]]:
    """`count` turns, A B A B …, each turn the next phrases of its speaker (cycling) until it
    lasts at least 1.5 s."""
    voices = {"A": (a, [0]), "B": (b, [0])}
    out = []
    for k in range(count):
        who = "AB"[k % 2]
        pool, cursor = voices[who]
        parts: list[np.ndarray] = []
        while sum(len(p) for p in parts) < 1.5 * RATE:
            if parts:
                parts.append(np.zeros(int(0.2 * RATE), np.int16))  # the speaker's own short pause
            parts.append(pool[cursor[0] % len(pool)])
            cursor[0] += 1
        out.append((who, np.concatenate(parts)))
    return out


def assemble(parts: list[tuple[str, np.ndarray]], lead_s: float = 0.5) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The PCM of the turns with GAPS between them, and (speaker, start, end) per turn."""
    pieces, truth, t = [np.zeros(int(lead_s * RATE), np.int16)], [], lead_s
    for k, (who, pcm) in enumerate(parts):
        if k:
            gap = GAPS[(k - 1) % len(GAPS)]
            pieces.append(np.zeros(int(gap * RATE), np.int16))
            t += int(gap * RATE) / RATE
        truth.append((who, t, t + len(pcm) / RATE))
        pieces.append(pcm)
        t += len(pcm) / RATE
    pieces.append(np.zeros(int(lead_s * RATE), np.int16))
    return np.concatenate(pieces), truth


def dialog(count: int = 8) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """jfk (A) and beckett (B) alternating for `count` turns."""
    return assemble(turns(phrases(jfk()), phrases(beckett()), count))


def monologue(seconds: float = 60.0) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """jfk alone for `seconds`: his phrases in turn, with the same range of pauses between."""
    pool = phrases(jfk())
    parts, total, k = [], 0.0, 0
    while total < seconds:
        parts.append(("A", pool[k % len(pool)]))
        total += len(pool[k % len(pool)]) / RATE + GAPS[k % len(GAPS)]
        k += 1
    return assemble(parts)


def speaker_error(truth: list[tuple[str, float, float]], turns, step: float = 0.01) -> float:
    """The share of true speech time whose label is wrong (unlabelled counts as wrong), after
    the best one-to-one mapping of labels to speakers. A time's label is the one a word said
    then gets (`cht.speakers.attribute.Turns`: the turn around it, or the nearest one)."""
    from cht.speakers.attribute import Turns

    times = np.arange(0, max(e for _, _, e in truth) + step, step)
    who = np.full(len(times), "", object)
    for name, a, b in truth:
        who[(times >= a) & (times < b)] = name
    at = Turns(list(turns))
    said = np.array([at.at(t) if w else "" for t, w in zip(times, who)], object)
    speech = who != ""
    names, labels = sorted(set(who[speech])), sorted(set(said[speech]) - {""})
    best = 0
    from itertools import permutations
    for chosen in permutations(labels + [None] * len(names), len(names)):
        right = sum(int(np.sum(speech & (who == n) & (said == lab))) for n, lab in zip(names, chosen) if lab)
        best = max(best, right)
    return 1.0 - best / int(speech.sum())


