"""Retention: delete whole sessions, oldest first, to keep a data dir within an age and a size.

A session's age is the time since its files were last written (its segments and manifest):
that is what "recorded 30 days ago" means on disk, and it needs no readable manifest. A
session being recorded is never touched: its recorder holds `.lock`, and prune takes that same
lock before deleting, so a recording cannot start on a session while it goes. The dir is
first renamed to a hidden name (no session id starts with '.'), so a crash mid-delete leaves
nothing that looks like a session; the next prune finishes it. The search index then forgets
every session that is no longer on disk.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cht.index.search import SearchIndex
from cht.session import SESSION_ID, Session, lock_held, take_lock

log = logging.getLogger("cht.prune")

ANALYSIS_LOCK = ".analysis.lock"  # cht.recording's: held while a process analyses the session
DELETING = ".pruned-"  # prefix of a session dir being deleted
_AGE_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """'30d', '12h', '2w', '90m' -> seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-z]+)\s*", text.lower())
    if not match or match.group(2) not in _AGE_UNITS or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not an age: use e.g. 30d, 12h, 2w or 90m")
    return float(match.group(1)) * _AGE_UNITS[match.group(2)]


@dataclass
class Entry:
    """One session as retention sees it."""

    session: Session
    written: float  # epoch seconds its media or manifest was last written
    bytes: int  # on disk
    live: bool  # recorded or analysed now: never deleted
    why: str = ""  # why it goes ("" : it stays)


def survey(data_dir: Path) -> list[Entry]:
    """Every session, oldest first."""
    base = Session.sessions_dir(data_dir)
    if not base.is_dir():
        return []
    entries = []
    for root in base.iterdir():
        if root.is_dir() and SESSION_ID.match(root.name):
            session = Session(root)
            entries.append(Entry(session, _last_written(root), _size(root), _in_use(session)))
    return sorted(entries, key=lambda e: (e.written, e.session.id))


def choose(entries: list[Entry], *, older_than_s: float | None, max_total: int | None, now: float) -> list[Entry]:
    """The sessions to delete, oldest first: every one older than `older_than_s`, then more
    until the rest fit in `max_total` bytes. Live ones are counted but never chosen."""
    total = sum(e.bytes for e in entries)
    chosen = []
    for entry in entries:
        if entry.live:
            continue
        if older_than_s is not None and now - entry.written > older_than_s:
            entry.why = f"last written {_days(now - entry.written)} ago"
        elif max_total is not None and total > max_total:
            entry.why = "over --max-total"
        else:
            continue
        chosen.append(entry)
        total -= entry.bytes
    return chosen


def remove(entry: Entry) -> bool:
    """Delete one session unless a recording holds it (checked under its own lock). True if gone."""
    root = entry.session.root
    try:
        fd = take_lock(root / ".lock")
    except FileNotFoundError:
        return False  # gone already
    if fd is None or lock_held(root / ANALYSIS_LOCK):
        entry.live = True
        if fd is not None:
            os.close(fd)
        return False
    try:
        doomed = root.with_name(DELETING + root.name)
        os.rename(root, doomed)
    finally:
        os.close(fd)
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def prune(data_dir: Path, *, older_than_s: float | None = None, max_total: int | None = None,
          dry_run: bool = False, now: float | None = None) -> tuple[list[Entry], list[Entry]]:
    """Choose and (unless `dry_run`) delete; returns (removed or to remove, every session seen)."""
    _finish_interrupted(data_dir)
    entries = survey(data_dir)
    chosen = choose(entries, older_than_s=older_than_s, max_total=max_total, now=now or time.time())
    if dry_run:
        return chosen, entries
    removed = [e for e in chosen if remove(e)]
    for entry in removed:
        log.info("removed session %s (%s, %d bytes)", entry.session.id, entry.why, entry.bytes)
    if removed:
        forget_removed(data_dir)
    return removed, entries


def forget_removed(data_dir: Path) -> None:
    """The search index drops every session no longer on disk (it is derived: a failure is a
    warning, `cht reindex` repairs it)."""
    try:
        index = SearchIndex(data_dir)
    except (sqlite3.Error, OSError) as exc:
        log.warning("search index not updated (%s): run `cht reindex`", exc)
        return
    try:
        base = Session.sessions_dir(data_dir)
        index.forget_others({p.name for p in base.iterdir() if p.is_dir() and SESSION_ID.match(p.name)})
    finally:
        index.close()


def _finish_interrupted(data_dir: Path) -> None:
    base = Session.sessions_dir(data_dir)
    if base.is_dir():
        for leftover in base.glob(DELETING + "*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _in_use(session: Session) -> bool:
    """Recorded now, or analysed now by a `cht follow` (which would lose its files)."""
    return session.is_recording() or lock_held(session.root / ANALYSIS_LOCK)


def _last_written(root: Path) -> float:
    paths = [root / "manifest.json", *(root / "segments").glob("*")]
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times) if times else root.stat().st_mtime


def _size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} h"


class Retention:
    """`cht ingest --retain/--max-total`: prune at start and then every `every_s`, on its own
    thread (a slow delete never holds up a recording), each removal logged."""

    def __init__(self, data_dir: Path, *, older_than_s: float | None, max_total: int | None,
                 every_s: float = 3600.0) -> None:
        self.data_dir, self.older_than_s, self.max_total, self.every_s = data_dir, older_than_s, max_total, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cht-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                removed, _ = prune(self.data_dir, older_than_s=self.older_than_s, max_total=self.max_total)
                log.info("retention: removed %d session(s), %d bytes", len(removed), sum(e.bytes for e in removed))
            except Exception:
                log.exception("retention failed; trying again in %g s", self.every_s)
            self._stop.wait(self.every_s)
