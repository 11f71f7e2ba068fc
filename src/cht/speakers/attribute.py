"""Transcript lines with speakers: a view derived at read time from `transcript.jsonl` and
`speakers.json`, never written back (the transcript stays the transcriber's own file, and a
re-clustering or a rename shows everywhere at once).

Each word takes the label of the turn around its middle, or of the nearest turn within
`NEAR_S` (speech too short to embed sits between turns); a word with neither takes its
neighbour's in the line. A line is split where the speaker changes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

from cht.speakers import store
from cht.speakers.store import SpeakerMap, Turn
from cht.transcribe.store import TranscriptLine, Word

NEAR_S = 1.5  # seconds


@dataclass
class SpeakerWord(Word):
    speaker: str = ""  # label, "" unknown


@dataclass
class SpeakerLine(TranscriptLine):
    speaker: str = ""  # label (S1…), "" unknown
    name: str = ""  # what to show: the name given to the label, else the label


class Turns:
    """Who spoke at a time, by bisection over the (sorted) turns."""

    def __init__(self, turns: list[Turn]) -> None:
        self.turns = sorted(turns, key=lambda t: t.start)
        self.starts = [t.start for t in self.turns]

    def at(self, t: float) -> str:
        i = bisect.bisect_right(self.starts, t) - 1
        best, distance = "", NEAR_S
        for j in (i, i + 1):
            if 0 <= j < len(self.turns):
                turn = self.turns[j]
                d = 0.0 if turn.start <= t <= turn.end else min(abs(t - turn.start), abs(t - turn.end))
                if d <= distance:
                    best, distance = turn.speaker, d
        return best


def attribute(lines: list[TranscriptLine], speakers: SpeakerMap) -> list[SpeakerLine]:
    """The lines with a speaker on every word, split at speaker changes (time order kept)."""
    turns, names = Turns(speakers.turns), speakers.names()
    out: list[SpeakerLine] = []
    for line in lines:
        if not line.words:
            label = turns.at((line.start + line.end) / 2) if speakers.turns else ""
            out.append(_line(line, line.start, line.end, line.text, [], label, names))
            continue
        labels = [turns.at((w.start + w.end) / 2) for w in line.words] if speakers.turns else [""] * len(line.words)
        labels = _fill(labels)
        words = [SpeakerWord(w.start, w.end, w.word, w.p, label) for w, label in zip(line.words, labels)]
        runs: list[list[SpeakerWord]] = []
        for w in words:
            if runs and runs[-1][-1].speaker == w.speaker:
                runs[-1].append(w)
            else:
                runs.append([w])
        if len(runs) == 1:
            out.append(_line(line, line.start, line.end, line.text, words, words[0].speaker, names))
            continue
        for run in runs:
            out.append(_line(line, run[0].start, run[-1].end, "".join(w.word for w in run).strip(), run,
                             run[0].speaker, names))
    return out


def _fill(labels: list[str]) -> list[str]:
    """Unknown words take the previous word's label, at the start the next known one."""
    known = next((x for x in labels if x), "")
    out = []
    for x in labels:
        known = x or known
        out.append(known)
    return out


def _line(line: TranscriptLine, start: float, end: float, text: str, words: list, label: str,
          names: dict[str, str]) -> SpeakerLine:
    return SpeakerLine(line.chunk, start, end, text, words, list(line.span), line.final, line.language,
                       label, names.get(label, ""))


def with_speakers(root: Path, lines: list[TranscriptLine]) -> list[SpeakerLine]:
    """A session's lines with its speakers (none known: every speaker is "")."""
    return attribute(lines, store.read(root))

