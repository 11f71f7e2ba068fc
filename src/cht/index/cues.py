"""Subtitle cues from transcript words: lines a viewer can read.

Cue times are the words' own times (first word's start, last word's end), never stretched,
so a cue is exactly as long as the speech it shows. A cue ends at a sentence end, a pause,
`MAX_S` of speech or two lines of `LINE_CHARS`, the usual limits of subtitle style guides.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from cht.transcribe.store import TranscriptLine

LINE_CHARS = 42
MAX_LINES = 2
MAX_S = 6.0
PAUSE_S = 0.8  # a silence this long between words starts a new cue
SENTENCE_MIN_S = 1.0  # a sentence end closes a cue that has been up this long


@dataclass
class Cue:
    start: float
    end: float
    text: str  # wrapped to at most MAX_LINES lines
    speaker: str = ""  # who says it, as shown (a speaker's name or label); "" unknown


def cues(lines: list[TranscriptLine]) -> list[Cue]:
    """A new speaker (lines from `cht.speakers.attribute` carry `name`) always starts a new cue."""
    words = []
    for line in sorted(lines, key=lambda x: x.start):
        who = getattr(line, "name", "")
        if line.words:
            words += [(w.start, w.end, w.word.strip(), who) for w in line.words if w.word.strip()]
        elif line.text:
            words.append((line.start, line.end, line.text, who))
    out: list[Cue] = []
    current: list[tuple[float, float, str, str]] = []

    def close() -> None:
        if current:
            start = max(current[0][0], out[-1].end if out else 0.0)  # never overlap the previous cue
            text = " ".join(w for _, _, w, _ in current)
            out.append(Cue(round(start, 3), round(max(current[-1][1], start), 3),
                           "\n".join(textwrap.wrap(text, LINE_CHARS)) or text, current[0][3]))
            current.clear()

    for start, end, word, who in words:
        if current and current[-1][3] != who:
            close()
        if current:
            text = " ".join(w for _, _, w, _ in current) + " " + word
            too_long = len(textwrap.wrap(text, LINE_CHARS)) > MAX_LINES or end - current[0][0] > MAX_S
            pause = start - current[-1][1] >= PAUSE_S
            sentence = current[-1][2][-1:] in ".?!" and current[-1][1] - current[0][0] >= SENTENCE_MIN_S
            if too_long or pause or sentence:
                close()
        current.append((start, end, word, who))
    close()
    return out


def timestamp(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def to_srt(items: list[Cue], offset: float = 0.0) -> str:
    blocks = [f"{i}\n{timestamp(c.start - offset, ',')} --> {timestamp(c.end - offset, ',')}\n"
              f"{c.speaker + ': ' if c.speaker else ''}{c.text}\n" for i, c in enumerate(items, 1)]
    return "\n".join(blocks)


def to_vtt(items: list[Cue], offset: float = 0.0) -> str:
    blocks = [f"{timestamp(c.start - offset, '.')} --> {timestamp(c.end - offset, '.')}\n"
              f"{f'<v {c.speaker}>' if c.speaker else ''}{c.text}\n" for c in items]
    return "WEBVTT\n\n" + "\n".join(blocks)
