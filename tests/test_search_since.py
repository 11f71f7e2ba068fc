"""`cht search --since/--limit` and the newest-first order of a query too common to rank,
against a real index in a data dir (README: cht search; DESIGN.md: search)."""

from __future__ import annotations

import time

from cht.index.search import RANKED_UP_TO, SearchIndex
from cht.transcribe.store import TranscriptLine
from conftest import Cht

DAY = 86_400


def lines(texts: list[str], first: int = 0) -> list[TranscriptLine]:
    return [TranscriptLine(first + i, 10.0 * i, 10.0 * i + 3, text, [], [10.0 * i, 10.0 * i + 5])
            for i, text in enumerate(texts)]


def test_since_and_limit_on_the_command_line(tmp_path):
    cht = Cht(tmp_path / "data")
    cht.data_dir.mkdir()
    index = SearchIndex(cht.data_dir)
    now = time.time()
    index.add("old-talk", lines(["fail better next time"] * 3), started=now - 10 * DAY, source="test")
    index.add("new-talk", lines(["fail better today", "we fail better", "fail better again"]), started=now - DAY,
              source="test")
    index.close()
    every = cht.run("search", "fail better")
    assert every.returncode == 0 and "old-talk" in every.stdout and "new-talk" in every.stdout, every.stdout
    recent = cht.run("search", "fail better", "--since", "3d")
    assert recent.returncode == 0 and "new-talk" in recent.stdout and "old-talk" not in recent.stdout, recent.stdout
    dated = cht.run("search", "fail better", "--since", time.strftime("%Y-%m-%d", time.localtime(now - 5 * DAY)))
    assert "new-talk" in dated.stdout and "old-talk" not in dated.stdout, dated.stdout
    one = cht.run("search", "fail better", "--limit", "2")
    assert one.returncode == 0 and one.stdout.count("/session/") == 2, one.stdout


def test_a_query_too_common_to_rank_lists_the_newest_lines_first(tmp_path):
    index = SearchIndex(tmp_path)
    now = time.time()
    common = ["the meeting went on"] * (RANKED_UP_TO // 2 + 1)
    index.add("monday", lines(common), started=now - 2 * DAY, source="test")
    index.add("tuesday", lines(common, first=len(common)), started=now - DAY, source="test")
    hits = index.search("the", limit=5)
    assert [h.session for h in hits] == ["tuesday"] * 5, "newest first"
    assert [h.start for h in hits] == sorted((h.start for h in hits), reverse=True), [h.start for h in hits]
    rare = index.search("the", session="monday", limit=3)
    assert len(rare) == 3 and {h.session for h in rare} == {"monday"}
    index.close()
