"""What the web server reads from a session's files on every request, read once per change.

The sessions page lists every session with its word count (from the head of
`transcript/index.json`: `store.index_summary`) and its first thumbnail, and every picture the
pages load is checked against `frames.jsonl` (`guard.frame_path`). Read afresh each time, 200
sessions of 8 h took 38 s per listing (bench/sessions_page.py). Each value is cached under its
file's identity (inode, size, modification time): a file rewritten or appended to is read
again, an archive's are read once. `functools.lru_cache` bounds the memory: one number or name
per listed session, and the picture names of the few sessions being viewed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cht.analyze.scenes import FRAMES_LOG, first_frame, read_frames
from cht.transcribe.store import INDEX, index_summary


def word_count(root: Path) -> int:
    return _word_count(root, _identity(root / INDEX))


def first_thumb(root: Path) -> str | None:
    """The file name of the session's first thumbnail, if it has one."""
    return _first_thumb(root, _identity(root / FRAMES_LOG))


def frame_names(root: Path) -> frozenset[str]:
    """The file names of every picture `frames.jsonl` lists (keyframes and thumbnails)."""
    return _frame_names(root, _identity(root / FRAMES_LOG))


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@lru_cache(maxsize=4096)
def _word_count(root: Path, identity: tuple | None) -> int:
    if identity is None:
        return 0
    try:
        return int(index_summary(root).get("words", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


@lru_cache(maxsize=4096)
def _first_thumb(root: Path, identity: tuple | None) -> str | None:
    first = first_frame(root) if identity is not None else None
    return Path(first.thumb).name if first else None


@lru_cache(maxsize=32)
def _frame_names(root: Path, identity: tuple | None) -> frozenset[str]:
    if identity is None:
        return frozenset()
    return frozenset(Path(n).name for f in read_frames(root) for n in (f.file, f.thumb))
