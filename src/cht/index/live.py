"""Keep the search index up to date from a running session's events, and rebuild it."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Callable

from cht import events as ev
from cht.index.search import SearchIndex
from cht.ocr.text import read_ocr
from cht.session import Session, epoch, list_sessions
from cht.transcribe.store import read_spoken

log = logging.getLogger("cht.index")


def follow(index: SearchIndex, session_id: str, started: Callable[[], str], source: str) -> ev.Listener:
    """A bus listener adding each final transcript line and each keyframe's text as it is written. The index is
    derived: if it cannot be written the recording goes on (and `cht reindex` catches up)."""

    def on_event(event: ev.Event) -> None:
        is_slide = isinstance(event, ev.SlideTextRead)
        if not is_slide and (not isinstance(event, ev.TranscriptSegments) or not event.final):
            return
        began = started()
        try:
            if is_slide:
                index.add_slides(session_id, [event.slide], started=epoch(began) if began else None, source=source)
            else:
                index.add(session_id, event.lines,
                          started=epoch(began) if began else None, source=source)
        except sqlite3.Error as exc:
            log.warning("search index not updated: %s (run `cht reindex`)", exc)

    return on_event


def reindex_session(index: SearchIndex, session: Session) -> int:
    """Replace a session's lines with what its transcript and slides hold; returns the line count."""
    manifest = session.current_manifest()
    lines = read_spoken(session.root)
    started = epoch(manifest.started_at) if manifest.started_at else session.root.stat().st_mtime
    index.replace_session(session.id, lines, started=started, source=manifest.source, slides=read_ocr(session.root))
    return len(lines)


def reindex_all(data_dir: Path) -> tuple[int, int]:
    """Rebuild the whole index from every session's transcript: (sessions, lines)."""
    index = SearchIndex(data_dir)
    try:
        seen, total = set(), 0
        for session, manifest in list_sessions(data_dir):
            if manifest is None:
                continue
            seen.add(session.id)
            total += reindex_session(index, session)
        index.forget_others(seen)
        return len(seen), total
    finally:
        index.close()
