"""Retention on real recorded sessions: `cht prune` by age and by total size, oldest first,
never the session a running `cht record` holds, the search index updated; `cht ingest
--retain` prunes at its start and logs it; neither leaves an ffmpeg behind after SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cht.index.live import reindex_all
from cht.index.search import SearchIndex
from cht.transcribe.store import TranscriptStore
from conftest import Cht, descendants, make_media, still_running, wait_for
from test_clips import cli, line, run_reaped
from test_web import free_port

DAY = 86400.0
AGES = {"old1": 40 * DAY, "old2": 35 * DAY, "new1": 3600.0}  # seconds since last written


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One real recorded session (3 s, --no-analyze) to copy from."""
    tmp = tmp_path_factory.mktemp("prune")
    cht = Cht(tmp / "data")
    src = make_media(tmp / "a.mp4", 3)
    result = cht.run("record", str(src), "--session", "base", "--fast", "--no-analyze", "--no-ui")
    assert result.returncode == 0, result.stderr
    return cht.session_dir("base")


@pytest.fixture
def aged(template, tmp_path) -> Cht:
    """old1, old2 and new1, each with a word of its own in the search index, last written as AGES say."""
    cht = Cht(tmp_path / "data")
    for name, age in AGES.items():
        root = cht.session_dir(name)
        shutil.copytree(template, root)
        TranscriptStore(root).append(line(0, 0.5, f"word{name}"))
        then = time.time() - age
        for path in [root / "manifest.json", *(root / "segments").iterdir()]:
            os.utime(path, (then, then))
    reindex_all(cht.data_dir)
    return cht


def found(cht: Cht, word: str) -> bool:
    """Whether the search index (the same file `cht search` reads) has the word."""
    index = SearchIndex(cht.data_dir)
    try:
        return bool(index.search(word))
    finally:
        index.close()


def disk_usage(path: Path) -> int:
    return int(subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def test_older_than_deletes_the_old_ones_oldest_first_and_the_index_forgets_them(aged: Cht):
    dry = run_reaped(aged, "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = [row.split()[2] for row in dry.stdout.splitlines() if row.startswith("would remove ") and "(" in row
              and not row.startswith("would remove 2 ")]
    assert listed == ["old1", "old2"], dry.stdout
    assert aged.sessions() == ["new1", "old1", "old2"], "a dry run deletes nothing"
    assert found(aged, "wordold1")
    done = run_reaped(aged, "prune", "--older-than", "30d")
    assert done.returncode == 0, done.stderr
    assert "removed 2 session(s)" in done.stdout
    assert aged.sessions() == ["new1"]
    assert not found(aged, "wordold1") and not found(aged, "wordold2") and found(aged, "wordnew1")
    assert not any(p.name.startswith(".") and p.is_dir() for p in (aged.data_dir / "sessions").iterdir())


def test_max_total_keeps_what_fits_and_never_the_live_one(aged: Cht, tmp_path, capsys):
    src = make_media(tmp_path / "voice.m4a", 60, video=False)  # audio only: a live session that grows slowly
    live = aged.start("record", str(src), "--session", "live", "--no-analyze", "--no-ui")
    try:
        wait_for(lambda: list(aged.session_dir("live").glob("segments/seg_*.mp4")), 20, what="the live recording")
        keep = disk_usage(aged.session_dir("new1")) + disk_usage(aged.session_dir("live")) + 200_000
        code, said, err = cli(capsys, aged.data_dir, "prune", "--max-total", str(keep))
        assert code == 0, err
        assert aged.sessions() == ["live", "new1"], said
        assert "1 live" in said
        code, _, err = cli(capsys, aged.data_dir, "prune", "--max-total", "0", "--older-than", "1s")
        assert code == 0, err
        assert aged.sessions() == ["live"], "the session being recorded must stay"
        children = descendants(live.pid)
        assert any("ffmpeg" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace") for pid, _ in children)
    finally:
        code, _, err = Cht.stop(live, signal.SIGTERM)
    assert code == 0, err
    assert still_running(children) == [], "SIGTERM must reap the recorder"
    assert aged.manifest("live")["state"] == "stopped"


def test_ingest_retain_prunes_at_its_start_logs_it_and_leaves_no_process(aged: Cht):
    port = free_port()
    service = aged.start("ingest", "--listen", f"tcp://127.0.0.1:{port}", "--no-analyze", "--no-ui", "--no-relay",
                         "--retain", "30d")
    try:
        log = aged.data_dir / "ingest.log"
        wait_for(lambda: log.exists() and "retention: removed 2 session(s)" in log.read_text(), 30,
                 what="the retention log line")
        text = log.read_text()
        assert "removed session old1" in text and "removed session old2" in text
        assert aged.sessions() == ["new1"]
        children = descendants(service.pid)
    finally:
        code, _, err = Cht.stop(service, signal.SIGTERM)
    assert code == 0, err
    assert still_running(children) == []


def test_bad_retention_values_are_one_line(aged: Cht, capsys):
    for args, says in [(("prune",), "needs --older-than"), (("prune", "--older-than", "soon"), "not an age"),
                       (("prune", "--max-total", "lots"), "not a size"),
                       (("ingest", "--listen", "tcp://127.0.0.1:1", "--no-ui", "--retain", "monthly"), "not an age")]:
        code, _, err = cli(capsys, aged.data_dir, *args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert aged.sessions() == ["new1", "old1", "old2"]
