"""The transcript on disk: `transcript.jsonl` (append-only, the truth) and the derived
`transcript/index.json`.

One line per chunk: its words with global times and the audio span it covers (`span`), so
what has been transcribed — and what is still missing after a crash or an interrupted stop —
can always be read back from the file itself. Stretches without speech are lines without
words: they record that the audio was listened to.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cht.session import atomic_write_text

log = logging.getLogger("cht.transcribe")

TRANSCRIPT = "transcript.jsonl"
INDEX = "transcript/index.json"
INDEX_VERSION = 1
SLIVER_S = 0.5  # uncovered media shorter than this holds no word: audio and video end apart


@dataclass
class Word:
    start: float  # global seconds
    end: float
    word: str  # as the model spells it, with its leading space
    p: float  # the model's probability for it

    @classmethod
    def from_dict(cls, data: dict) -> "Word":
        return cls(float(data["start"]), float(data["end"]), str(data["word"]), float(data.get("p", 1.0)))


@dataclass
class TranscriptLine:
    chunk: int
    start: float  # global seconds: first word (or the span, without words)
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    span: list[float] = field(default_factory=list)  # [from, to]: the audio this chunk covers
    final: bool = True  # False: a hypothesis for a chunk still being spoken (events only)
    language: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> "TranscriptLine":
        return cls(int(data["chunk"]), float(data["start"]), float(data["end"]), str(data["text"]),
                   [Word.from_dict(w) for w in data.get("words") or []], [float(x) for x in data.get("span") or []],
                   bool(data.get("final", True)), str(data.get("language", "")))


class TranscriptStore:
    def __init__(self, root: Path, name: str = TRANSCRIPT) -> None:
        self.root = root
        self.path = root / name

    def append(self, line: TranscriptLine) -> None:
        """Append one final line and make it durable before anyone is told about it. After a
        torn last line (a kill mid-append) the new line starts on a line of its own."""
        with open(self.path, "a+b") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(line.to_json().encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[TranscriptLine]:
        return read_lines(self.path)

    def write_index(self, lines: list[TranscriptLine], pending: list[tuple[float, float]]) -> None:
        """Write `transcript/index.json` for these lines (at the end of a run; live, the
        transcriber keeps a `TranscriptIndex`)."""
        TranscriptIndex(lines).write(self.root, pending)


class TranscriptIndex:
    """What `transcript/index.json` holds, kept up to date a line at a time: each spoken line
    is serialised once, when it is added, so a rewrite joins strings: 0.03 s for a day of speech
    (43,000 lines, 3.3 MB), where rebuilding it from every line with indentation took 0.62 s of
    the speech engine's thread, and keeping the lines 54 MiB against 9 (bench/long_session.py)."""

    def __init__(self, lines: list[TranscriptLine] = ()) -> None:
        self.chunks = 0
        self.words = 0
        self._entries: list[tuple[float, int, str]] = []  # (start, order added, JSON) in time order
        for line in lines:
            self.add(line)

    def add(self, line: TranscriptLine) -> None:
        self.chunks += 1
        if not line.text:
            return
        self.words += len(line.words) or len(line.text.split())
        entry = json.dumps({"chunk": line.chunk, "start": line.start, "end": line.end, "text": line.text},
                           ensure_ascii=False, separators=(",", ":"))
        bisect.insort(self._entries, (line.start, self.chunks, entry))  # appended lines come in time order: at the end

    def text(self, pending: list[tuple[float, float]]) -> str:
        head = json.dumps({"version": INDEX_VERSION, "complete": not pending,
                           "pending": [[round(a, 3), round(b, 3)] for a, b in pending],
                           "chunks": self.chunks, "words": self.words}, separators=(",", ":"))
        return f'{head[:-1]},"lines":[{",".join(entry for _, _, entry in self._entries)}]}}\n'

    def write(self, root: Path, pending: list[tuple[float, float]]) -> int:
        """Write `transcript/index.json` atomically; returns its length (characters)."""
        text = self.text(pending)
        (root / INDEX).parent.mkdir(exist_ok=True)
        atomic_write_text(root / INDEX, text)
        return len(text)


def index_summary(root: Path) -> dict:
    """The index without its lines (version, complete, pending, chunks, words), read only up to
    where the lines begin as `TranscriptIndex.text` writes them: a list of sessions needs each
    one's word count, and a day of speech is a 3 MB index. Raises OSError, ValueError."""
    with (root / INDEX).open("rb") as file:
        head = file.read(1 << 16)  # the summary is a few hundred bytes unless thousands of stretches are pending
        if (at := head.find(b',"lines":[')) >= 0:
            return json.loads(head[:at] + b"}")
        return json.loads(head + file.read())  # written another way (an older version indented it): whole


def read_lines(path: Path) -> list[TranscriptLine]:
    """Every readable final line; a torn last line (a kill mid-append) is ignored with a warning."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    lines: list[TranscriptLine] = []
    rows = raw.split(b"\n")
    for number, row in enumerate(rows, 1):
        if not row.strip():
            continue
        try:
            line = TranscriptLine.from_dict(json.loads(row))
        except (ValueError, KeyError, TypeError):
            where = "its last line is cut short" if number == len(rows) else f"line {number} is unreadable"
            log.warning("%s: %s; ignored", path.name, where)
            continue
        if line.final:
            lines.append(line)
    return lines


def read_spoken(session_root: Path) -> list[TranscriptLine]:
    """A session's final lines that hold words, in time order (silence lines left out)."""
    return sorted((line for line in read_lines(session_root / TRANSCRIPT) if line.text), key=lambda x: x.start)


def merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1] + SLIVER_S:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def covered(lines: list[TranscriptLine]) -> list[tuple[float, float]]:
    return merge([(line.span[0], line.span[1]) for line in lines if len(line.span) == 2])


def missing(media: list[tuple[float, float]], done: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Stretches of recorded media (global spans) not yet covered by the transcript."""
    out: list[tuple[float, float]] = []
    for a, b in media:
        cursor = a
        for c, d in done:
            if d <= cursor or c >= b:
                continue
            if c - cursor > SLIVER_S:
                out.append((cursor, c))
            cursor = max(cursor, d)
        if b - cursor > SLIVER_S:
            out.append((cursor, b))
    return out
