"""The search index: every session's transcript lines and slide text in SQLite FTS5, in the data dir.

It is derived: deleting `index.sqlite` loses nothing (`cht reindex` rebuilds it from the
sessions' `transcript.jsonl` and `ocr.jsonl`). Slide text is its own kind (`slides`): a hit says
whether the words were said or shown. While recording, final lines are added as they are written,
so a phrase is searchable a moment after it is transcribed. Several processes may write at
once (two recordings, a reindex): WAL mode and a busy timeout let SQLite serialise them.

A live transcript is committed a few words at a time, so a line may end mid-sentence ("Fail" |
"better."): a row of the index is a sentence, not a line. A line that follows on from a row
ending mid-sentence is joined to it, as it is added live and when a session is reindexed alike;
a phrase said across two lines is found, and its hit says when its first word was said.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from cht.index.query import Query, fold, parse
from cht.ocr.text import SlideText
from cht.transcribe.store import TranscriptLine

INDEX_FILE = "index.sqlite"
SCHEMA_VERSION = 1
JOIN_GAP_S = 1.5  # a line starting this soon after a row that ended mid-sentence is joined to it
MAX_ROW_S = 30.0  # ... while the row stays this short (speech the model did not punctuate)
SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
RANKED_UP_TO = 5_000  # lines a query may match and still be ranked by BM25; past that, newest first
MARK_START, MARK_END = "\x02", "\x03"  # around matched words in snippets; never in speech
_WORD = re.compile(r"\w+")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, started REAL NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY, session TEXT NOT NULL, chunk INTEGER NOT NULL,
    start REAL NOT NULL, end REAL NOT NULL, text TEXT NOT NULL, words TEXT NOT NULL,
    UNIQUE (session, chunk));
CREATE INDEX IF NOT EXISTS lines_session ON lines (session, start);
CREATE VIRTUAL TABLE IF NOT EXISTS lines_fts USING fts5(
    text, content='lines', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS lines_vocab USING fts5vocab(lines_fts, 'row');
CREATE TRIGGER IF NOT EXISTS lines_ai AFTER INSERT ON lines BEGIN
    INSERT INTO lines_fts (rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS lines_ad AFTER DELETE ON lines BEGIN
    INSERT INTO lines_fts (lines_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
CREATE TABLE IF NOT EXISTS slides (
    id INTEGER PRIMARY KEY, session TEXT NOT NULL, t REAL NOT NULL, file TEXT NOT NULL,
    title TEXT NOT NULL, text TEXT NOT NULL, UNIQUE (session, file));
CREATE VIRTUAL TABLE IF NOT EXISTS slides_fts USING fts5(
    text, content='slides', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS slides_ai AFTER INSERT ON slides BEGIN
    INSERT INTO slides_fts (rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS slides_ad AFTER DELETE ON slides BEGIN
    INSERT INTO slides_fts (slides_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass
class Hit:
    session: str
    t: float  # global seconds: the first matched word
    start: float  # the line's span
    end: float
    snippet: str  # with MARK_START / MARK_END around matched words
    text: str
    kind: str = "speech"  # speech | slide (then `t` is when the keyframe showed)
    speaker: str = ""  # who said it (a speaker's name, else its label), read at query time so renames show


class SearchIndex:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / INDEX_FILE
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing --

    def add(self, session: str, lines: list[TranscriptLine], *, started: float | None = None,
            source: str | None = None) -> None:
        """Add (or replace, by chunk) a session's final lines."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert(session, lines, started, source)

    def replace_session(self, session: str, lines: list[TranscriptLine], *, started: float, source: str,
                        slides: list[SlideText] = ()) -> None:
        """All of a session's lines at once: readers see the old set or the new, never none."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._drop(session)
            self._insert(session, lines, started, source)
            self._insert_slides(session, slides)

    def add_slides(self, session: str, slides: list[SlideText], *, started: float | None = None,
                   source: str | None = None) -> None:
        """Add (or replace, by keyframe) a session's slide text."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert(session, [], started, source)
            self._insert_slides(session, slides)

    def sessions(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT id FROM sessions")}

    def forget_others(self, keep: set[str]) -> None:
        """Drop sessions that no longer exist on disk."""
        for session in self.sessions() - keep:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._drop(session)

    def _insert(self, session: str, lines: list[TranscriptLine], started: float | None, source: str | None) -> None:
        if started is not None:
            self._db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", (session, started, source or ""))
        for line in lines:
            if not line.text:
                continue
            row = (session, line.chunk, line.start, line.end, line.text, _compact(line.words))
            before = self._db.execute("SELECT id, chunk, start, end, text, words FROM lines WHERE session = ? "
                                      "AND start <= ? ORDER BY start DESC LIMIT 1", (session, line.start)).fetchone()
            if before is not None and before[1] != line.chunk and before[3] >= line.end:
                continue  # a line already joined to a row, added again
            if before is not None and _continues(before, line):
                self._db.execute("DELETE FROM lines WHERE id = ?", (before[0],))
                row = (session, before[1], before[2], line.end, f"{before[4]} {line.text}",
                       _compact(line.words, before=before[5]))
            else:
                self._db.execute("DELETE FROM lines WHERE session = ? AND chunk = ?", row[:2])
            self._db.execute("INSERT INTO lines (session, chunk, start, end, text, words) VALUES (?, ?, ?, ?, ?, ?)",
                             row)

    def _insert_slides(self, session: str, slides: list[SlideText]) -> None:
        rows = [(session, s.t, s.file, s.title, s.text) for s in slides if s.lines]
        self._db.executemany("DELETE FROM slides WHERE session = ? AND file = ?", [(r[0], r[2]) for r in rows])
        self._db.executemany("INSERT INTO slides (session, t, file, title, text) VALUES (?, ?, ?, ?, ?)", rows)

    def _drop(self, session: str) -> None:
        self._db.execute("DELETE FROM lines WHERE session = ?", (session,))
        self._db.execute("DELETE FROM slides WHERE session = ?", (session,))
        self._db.execute("DELETE FROM sessions WHERE id = ?", (session,))

    # -- searching --

    def search(self, text: str, *, session: str | None = None, since: float | None = None,
               limit: int = 20, kind: str | None = None) -> list[Hit]:
        """Ranked hits: the typed words as an exact phrase first, then by BM25. A query whose
        every word is in more than `RANKED_UP_TO` lines gains nothing from BM25 (such a word
        weighs next to nothing) but would make it score them all: newest first instead.
        `kind`: only speech or only slide hits; both kinds are merged by their BM25 scores."""
        query = parse(text)
        if query.empty:
            return []
        ranked = self._matches_at_most(query) <= RANKED_UP_TO
        hits: dict[tuple[str, int], Hit] = {}
        for expression in (query.as_phrase(), query.match()):
            if expression is None:
                continue
            found = []
            if kind in (None, "speech"):
                order = "bm25(lines_fts)" if ranked else "lines_fts.rowid DESC"
                found += self._run(expression, query, session, since, limit, order)
            if kind in (None, "slide"):
                found += self._run_slides(expression, session, since, limit)
            found.sort(key=lambda item: item[0])  # stable: unranked speech keeps its newest-first order
            for _, key, hit in found:
                hits.setdefault(key, hit)
            if len(hits) >= limit:
                break
        return self._with_speakers(list(hits.values())[:limit])

    def _with_speakers(self, hits: list[Hit]) -> list[Hit]:
        """Each speech hit's speaker, from its session's `speakers.json` (not indexed: a rename
        or a re-clustering would otherwise need a reindex)."""
        from cht.speakers import store
        from cht.speakers.attribute import Turns

        maps: dict[str, tuple[Turns, dict[str, str]]] = {}
        for hit in hits:
            if hit.kind != "speech":
                continue
            if hit.session not in maps:
                speakers = store.read(self.path.parent / "sessions" / hit.session)
                maps[hit.session] = (Turns(speakers.turns), speakers.names())
            turns, names = maps[hit.session]
            hit.speaker = names.get(turns.at(hit.t), "")
        return hits

    def _run_slides(self, expression: str, session: str | None, since: float | None, limit: int):
        """Slide hits; a keyframe that only added lines to the matching one before it (a
        bullet revealed under the same title) is the same slide: it is not a second hit."""
        sql = ("SELECT slides.id, slides.session, slides.t, slides.text, bm25(slides_fts), slides.title, "
               f"snippet(slides_fts, 0, '{MARK_START}', '{MARK_END}', '…', 16) "
               "FROM slides_fts JOIN slides ON slides.id = slides_fts.rowid "
               "LEFT JOIN sessions ON sessions.id = slides.session WHERE slides_fts MATCH ?")
        scope, args = _scope("slides", session, since)
        sql += scope + " ORDER BY bm25(slides_fts) LIMIT ?"
        args = [expression, *args, limit]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        kept, last = [], {}
        for row in sorted(rows, key=lambda r: (r[1], r[2])):
            before = last.get(row[1])
            last[row[1]] = row
            if before is not None and before[5] == row[5] and set(before[3].split("\n")) <= set(row[3].split("\n")):
                continue
            kept.append(row)
        return [(score, ("slide", row_id), Hit(sess, t, t, t, snippet.replace("\n", " / "), text.replace("\n", " / "),
                                               "slide"))
                for row_id, sess, t, text, score, title, snippet in sorted(kept, key=lambda r: r[4])]

    def _matches_at_most(self, query: Query) -> int:
        """An upper bound on the lines an AND query matches: its rarest part's line count."""
        counts = []
        with self._lock:
            for word in [w for p in query.phrases for w in p] + query.words:
                row = self._db.execute("SELECT doc FROM lines_vocab WHERE term = ?", (fold(word),)).fetchone()
                counts.append(row[0] if row else 0)
            for prefix in query.prefixes:
                start = fold(prefix)
                row = self._db.execute("SELECT sum(doc) FROM lines_vocab WHERE term >= ? AND term < ?",
                                       (start, start + "\U0010ffff")).fetchone()
                counts.append(row[0] or 0)
        return min(counts, default=0)

    def _run(self, expression: str, query: Query, session: str | None, since: float | None, limit: int,
             order: str):
        sql = ("SELECT lines.id, lines.session, lines.start, lines.end, lines.text, lines.words, "
               f"snippet(lines_fts, 0, '{MARK_START}', '{MARK_END}', '…', 16), "
               f"{order if order.startswith('bm25') else '0.0'} "
               "FROM lines_fts JOIN lines ON lines.id = lines_fts.rowid "
               "LEFT JOIN sessions ON sessions.id = lines.session WHERE lines_fts MATCH ?")
        scope, args = _scope("lines", session, since)
        sql += scope + f" ORDER BY {order} LIMIT ?"
        args = [expression, *args, limit]
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [(score, ("speech", row_id),
                 Hit(sess, _first_match(json.loads(words), query, start), start, end, snippet, line_text))
                for row_id, sess, start, end, line_text, words, snippet, score in rows]


def _scope(table: str, session: str | None, since: float | None) -> tuple[str, list]:
    """The WHERE clauses (and their arguments) that narrow hits to a session or a start date."""
    sql, args = "", []
    if session is not None:
        sql += f" AND {table}.session = ?"
        args.append(session)
    if since is not None:
        sql += " AND sessions.started >= ?"
        args.append(since)
    return sql, args


def _continues(row: tuple, line: TranscriptLine) -> bool:
    """Does `line` go on with the sentence of `row` (id, chunk, start, end, text, words)?"""
    _, chunk, start, end, text, _ = row
    return (line.chunk != chunk and not text.rstrip().endswith(SENTENCE_END)
            and -JOIN_GAP_S <= line.start - end <= JOIN_GAP_S and line.end - start <= MAX_ROW_S)


def _compact(words: list, before: str = "[]") -> str:
    """[[start, word], ...]: all a hit needs to say when its first matched word was spoken
    (`before`: the row's words so far)."""
    return json.dumps(json.loads(before) + [[round(w.start, 2), w.word.strip()] for w in words],
                      ensure_ascii=False, separators=(",", ":"))


def _first_match(words: list[list], query: Query, default: float) -> float:
    """Global time of what the query asked for: where a phrase in it (or its words typed in
    order) begins, else the first word it names."""
    tokens = [(float(start), part) for start, word in words for part in _WORD.findall(fold(word))]
    folded = [part for _, part in tokens]
    sequences = [[fold(w) for w in p] for p in query.phrases]
    if len(query.words) > 1:
        sequences.append([fold(w) for w in query.words])
    for sequence in sequences:
        for i in range(len(folded) - len(sequence) + 1):
            if folded[i:i + len(sequence)] == sequence:
                return tokens[i][0]
    wanted = set(query.terms())
    prefixes = [fold(p) for p in query.prefixes]
    for start, part in tokens:
        if part in wanted or any(part.startswith(p) for p in prefixes):
            return start
    return default
