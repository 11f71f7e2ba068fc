"""What analysis derives in a session dir, and how it is cleared for a fresh run.

The user's manual captures are never derived: they survive every re-analysis.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cht.analyze.scenes import FRAMES_LOG, read_frames

DERIVED = ("frames", FRAMES_LOG, "audio", "ocr.jsonl")


def clear_derived(session_dir: Path, keep_into: Path | None = None, names: tuple[str, ...] = DERIVED) -> None:
    """Remove what analysis derives, keeping the user's manual captures: their records and
    pictures stay (or move into `keep_into`, the fresh results, merged in time order)."""
    manual = [r for r in read_frames(session_dir) if r.kind == "manual"] if FRAMES_LOG in names else []
    target = keep_into or session_dir
    stash = session_dir / ".manual.tmp"
    shutil.rmtree(stash, ignore_errors=True)
    stash.mkdir()
    for record in manual:
        for name in (record.file, record.thumb):
            if (session_dir / name).exists():
                os.replace(session_dir / name, stash / Path(name).name)
    for name in names:
        path = session_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if manual:
        (target / "frames").mkdir(parents=True, exist_ok=True)
        for picture in stash.iterdir():
            os.replace(picture, target / "frames" / picture.name)
        records = sorted(read_frames(target) + manual, key=lambda r: r.t)
        (target / FRAMES_LOG).write_text("".join(r.to_json() + "\n" for r in records), encoding="utf-8")
    shutil.rmtree(stash, ignore_errors=True)
