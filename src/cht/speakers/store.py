"""A session's speakers on disk.

- `speakers/embeddings.jsonl`, append-only, the truth: one line per embedded window
  `{start, end, e}` (e: the 256 float32 values, base64), so re-clustering never decodes audio.
- `speakers.json`, derived and rewritten atomically: `{version, speakers [{id, name, color,
  seconds}], turns [{start, end, speaker}]}`. Labels (`S1`, `S2`…) are ids; a name is what a
  person typed for one, kept by id across re-clustering.

The stage and `cht speakers … rename` (or the page) may write at once: every change is a
read-modify-write under an exclusive lock on `speakers/.lock`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from cht.errors import SessionError
from cht.session import atomic_write_text
from cht.speakers.cluster import label_number

log = logging.getLogger("cht.speakers")

MAP = "speakers.json"
FOLDER = "speakers"
EMBEDDINGS = "speakers/embeddings.jsonl"
VERSION = 1
COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
          "#bab0ac")
MAX_NAME = 80


@dataclass
class Turn:
    start: float  # global seconds
    end: float
    speaker: str  # a label: S1, S2, …


@dataclass
class Speaker:
    id: str
    name: str  # "" until someone names it
    color: str
    seconds: float  # speech time with this label

    @property
    def shown(self) -> str:
        return self.name or self.id


@dataclass
class SpeakerMap:
    speakers: list[Speaker] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    def names(self) -> dict[str, str]:
        """What exports and search show per label: its name, else the label; nothing for a
        lone unnamed speaker (a lecture's subtitles need no "S1:" on every line)."""
        if len(self.speakers) == 1:
            return {s.id: s.name for s in self.speakers}
        return {s.id: s.shown for s in self.speakers}

    def to_dict(self) -> dict:
        return {"version": VERSION, "speakers": [asdict(s) for s in self.speakers],
                "turns": [[round(t.start, 3), round(t.end, 3), t.speaker] for t in self.turns]}


@dataclass
class Embedded:
    start: float
    end: float
    embedding: np.ndarray

    def to_json(self) -> str:
        e = base64.b64encode(self.embedding.astype("<f4").tobytes()).decode()
        return json.dumps({"start": round(self.start, 3), "end": round(self.end, 3), "e": e})


def read(root: Path) -> SpeakerMap:
    """The session's speakers (empty when it has none; an unreadable file is logged and empty)."""
    try:
        data = json.loads((root / MAP).read_text(encoding="utf-8"))
        return SpeakerMap([Speaker(str(s["id"]), str(s.get("name", "")), str(s["color"]), float(s["seconds"]))
                           for s in data["speakers"]],
                          [Turn(float(a), float(b), str(label)) for a, b, label in data["turns"]])
    except FileNotFoundError:
        return SpeakerMap()
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s unreadable (%s): speakers left out", root / MAP, exc)
        return SpeakerMap()


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    (root / FOLDER).mkdir(exist_ok=True)
    fd = os.open(root / FOLDER / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(root: Path, change: Callable[[SpeakerMap], SpeakerMap]) -> SpeakerMap:
    with _locked(root):
        new = change(read(root))
        atomic_write_text(root / MAP, json.dumps(new.to_dict(), separators=(",", ":")) + "\n")
        return new


def set_turns(root: Path, turns: list[Turn]) -> SpeakerMap:
    """New turns (live, or after re-clustering): seconds recounted, names kept by id, a
    label that no longer speaks dropped."""

    def change(old: SpeakerMap) -> SpeakerMap:
        seconds: dict[str, float] = {}
        for t in turns:
            seconds[t.speaker] = seconds.get(t.speaker, 0.0) + (t.end - t.start)
        names = {s.id: s.name for s in old.speakers}
        speakers = [Speaker(label, names.get(label, ""), COLORS[(label_number(label) - 1) % len(COLORS)],
                            round(seconds[label], 2)) for label in sorted(seconds, key=label_number)]
        return SpeakerMap(speakers, merge_turns(turns))

    return update(root, change)


def rename(root: Path, label: str, name: str) -> SpeakerMap:
    """Name a label; an empty name goes back to the label. Unknown label: a SessionError."""
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise SessionError(f"a speaker name has at most {MAX_NAME} characters")
    if any(c in name for c in "<>"):
        raise SessionError("a speaker name cannot hold < or > (WebVTT voice tags)")

    def change(old: SpeakerMap) -> SpeakerMap:
        _known(old, label)
        for s in old.speakers:
            if s.id == label:
                s.name = name
        return old

    _known(read(root), label)  # before the lock: a bad label leaves nothing behind
    return update(root, change)


def _known(speakers: SpeakerMap, label: str) -> None:
    known = [s.id for s in speakers.speakers]
    if label not in known:
        raise SessionError(f"no speaker {label!r} in this session: choose one of {', '.join(known) or '(none yet)'}")


def merge_turns(turns: list[Turn]) -> list[Turn]:
    """Time order; neighbours with the same label that touch (or nearly) become one turn."""
    out: list[Turn] = []
    for t in sorted(turns, key=lambda x: x.start):
        if out and out[-1].speaker == t.speaker and t.start - out[-1].end < 0.05:
            out[-1] = Turn(out[-1].start, max(out[-1].end, t.end), t.speaker)
        else:
            out.append(Turn(t.start, t.end, t.speaker))
    return out


def append_embedding(root: Path, item: Embedded) -> None:
    (root / FOLDER).mkdir(exist_ok=True)
    with open(root / EMBEDDINGS, "a", encoding="utf-8") as f:
        f.write(item.to_json() + "\n")


def read_embeddings(root: Path) -> list[Embedded]:
    """Every readable line (a torn last line from a kill is skipped)."""
    out = []
    try:
        rows = (root / EMBEDDINGS).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for row in rows:
        try:
            data = json.loads(row)
            e = np.frombuffer(base64.b64decode(data["e"]), "<f4").astype(np.float32)
            if e.shape != (256,):
                raise ValueError("not 256 values")
            out.append(Embedded(float(data["start"]), float(data["end"]), e))
        except (ValueError, KeyError, TypeError):
            log.warning("%s: an unreadable line skipped", EMBEDDINGS)
    return out

