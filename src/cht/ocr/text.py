"""Slide text records (`ocr.jsonl`), the slide's title, and chapters from titles.

`ocr.jsonl` is append-only like `frames.jsonl`: one line per keyframe read,
`{t, file, lines: [{text, box, p}], title}`, so a killed run keeps what it read and a
resumed one reads only the rest. Titles and chapters are derived from the lines alone, so
live, `cht analyze` and the exports agree.
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

log = logging.getLogger("cht.ocr")

OCR_LOG = "ocr.jsonl"
TITLE_ZONE = 0.4  # a title starts in this top share of the picture
TITLE_SCALE = 1.12  # a title's line is this much taller than the median line
TITLE_MIN = 0.035  # a lone line is a title only if at least this share of the picture tall
SAME_TITLE = 0.85  # titles this similar (difflib ratio, folded) are one chapter: OCR varies a letter


@dataclass
class TextLine:
    text: str
    box: list[int]  # x0, y0, x1, y1 in the keyframe's pixels
    p: float  # the recogniser's confidence, 0-1

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


@dataclass
class SlideText:
    t: float  # global seconds: the keyframe's time
    file: str  # the keyframe, relative to the session dir
    lines: list[TextLine] = field(default_factory=list)
    title: str = ""

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> SlideText:
        data = json.loads(line)
        lines = [TextLine(str(x["text"]), [int(v) for v in x["box"]], float(x["p"])) for x in data["lines"]]
        return cls(float(data["t"]), str(data["file"]), lines, str(data.get("title", "")))


@dataclass
class Chapter:
    start: float  # global seconds
    end: float
    title: str


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Top to bottom; boxes on one row (their middles within half a line) left to right."""
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda x: (x.box[1] + x.box[3]) / 2):
        middle = (line.box[1] + line.box[3]) / 2
        if rows and abs(middle - _middle(rows[-1][0])) < rows[-1][0].height / 2:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda x: x.box[0])]


def _middle(line: TextLine) -> float:
    return (line.box[1] + line.box[3]) / 2


def title_of(lines: list[TextLine], height: int) -> str:
    """The slide's heading: the tallest text in the top of the picture, clearly taller than
    the rest (a lone line only if it is large). Lines of the same height right below it
    (a heading that wraps) belong to it. Empty when nothing stands out (a camera frame)."""
    words = [x for x in lines if len(re.findall(r"\w", x.text)) >= 3]  # a lone glyph is noise, never a heading
    top = [x for x in words if x.box[1] < height * TITLE_ZONE]
    if not top:
        return ""
    head = max(top, key=lambda x: x.height)
    others = [x.height for x in words if x is not head]
    if others and head.height < TITLE_SCALE * statistics.median(others):
        return ""
    if not others and head.height < TITLE_MIN * height:
        return ""
    parts = [x for x in reading_order(words) if x.height >= 0.9 * head.height
             and head.box[1] - 0.5 * head.height <= x.box[1] <= head.box[3] + 0.8 * head.height]
    return " ".join(x.text.strip() for x in parts)


def _fold(text: str) -> str:
    return re.sub(r"\W+", " ", text.casefold()).strip()


def same_title(a: str, b: str) -> bool:
    a, b = _fold(a), _fold(b)
    return a == b or SequenceMatcher(None, a, b).ratio() >= SAME_TITLE


def chapters(slides: list[SlideText], end: float) -> list[Chapter]:
    """Every new title starts a chapter; a slide that only gained a bullet (same title) and
    a frame with no title (a camera cut) continue the one before."""
    found: list[Chapter] = []
    for slide in sorted(slides, key=lambda s: s.t):
        if slide.title and not (found and same_title(found[-1].title, slide.title)):
            if found:
                found[-1].end = slide.t
            found.append(Chapter(slide.t, max(end, slide.t), slide.title))
    return found


def read_ocr(session_dir: Path) -> list[SlideText]:
    """ocr.jsonl in time order, ignoring a torn last line (a kill while appending); a
    keyframe read twice (a resumed run) counts once, the later reading."""
    path = session_dir / OCR_LOG
    if not path.exists():
        return []
    by_file: dict[str, SlideText] = {}
    lines = path.read_bytes().split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = SlideText.from_json(raw.decode("utf-8"))
        except (ValueError, TypeError, KeyError, IndexError):
            where = "its last line is cut short" if number == len(lines) else f"line {number} is unreadable"
            log.warning("%s: %s; ignored", OCR_LOG, where)
            continue
        by_file[record.file] = record
    return sorted(by_file.values(), key=lambda s: s.t)


def append(session_dir: Path, record: SlideText) -> None:
    """One line in ocr.jsonl (append, flush, fsync): the truth for slide text."""
    with open(session_dir / OCR_LOG, "a", encoding="utf-8") as f:
        f.write(record.to_json() + "\n")
        f.flush()
        os.fsync(f.fileno())
