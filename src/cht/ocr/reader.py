"""Reading the text in a keyframe with RapidOCR (PP-OCR detection and recognition, ONNX
Runtime; the models ship inside the wheel, nothing downloads).

One engine per process, made on first use and shared by every session's OCR stage; one
reading at a time, on one ONNX thread in the calling thread, so OCR never takes more
than one core from recording and speech (DESIGN.md: 0.65 s a 720p slide). The
orientation classifier is off: slides are upright, and it cost time for nothing.
Detection sees the picture at most 1280 px wide, recognition the full-resolution crops.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cht.ocr.text import TextLine, reading_order

MIN_P = 0.6  # lines the recogniser is less sure of are dropped (a webcam box read as "E" at 0.51)

_lock = threading.Lock()
_engine = None


class UnreadableImage(Exception):
    """A keyframe that is not a readable picture (truncated, corrupt, missing)."""


def _get_engine():
    global _engine
    if _engine is None:
        from rapidocr import RapidOCR

        _engine = RapidOCR(params={
            "Global.use_cls": False,
            "Global.log_level": "error",
            "Global.text_score": MIN_P,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            # Detection on at most 1280 px (recognition still crops the full picture): a 1080p
            # slide costs what a 720p one does (2.5 -> 1.2 CPU s, the same text, bench/ocr.py).
            "Det.limit_type": "max",
            "Det.limit_side_len": 1280,
        })
    return _engine


def load(path: Path):
    """The picture, fully decoded (a truncated JPEG raises instead of showing grey)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for a bad file
        raise UnreadableImage(f"{path.name}: {exc}") from None


def read_lines(path: Path) -> tuple[list[TextLine], int]:
    """The text lines of a picture in reading order, and the picture's height."""
    image = load(path)
    with _lock:
        result = _get_engine()(image)
    lines = []
    if result.boxes is not None and result.txts:
        for box, text, p in zip(result.boxes, result.txts, result.scores):
            text = text.strip()
            if not text or p < MIN_P:
                continue
            xs, ys = [pt[0] for pt in box], [pt[1] for pt in box]
            lines.append(TextLine(text, [int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))], round(float(p), 3)))
    return reading_order(lines), image.height
