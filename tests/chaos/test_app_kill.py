"""kill -9 of `cht record` itself, timed to land on the moments that matter: a segment
rotation, a manifest write, a transcript append. Each time `cht rebuild` must recover every
segment (each decodes to its end) and every transcript line written before the kill; the
session then continues (`--append`) and the next kill comes. Torn last lines of
transcript.jsonl and frames.jsonl are ignored with a warning, and `cht transcribe` fills in
what the kills left untranscribed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from cht.transcribe.store import read_lines
from conftest import Cht, decode_fully, wait_for
from speech import make_speech_video, norm, transcript_words

pytestmark = pytest.mark.slow


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return -1


def _writers_of(root: Path) -> list[int]:
    """Processes still holding the session's segments (the orphaned recorder finishing)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(root / "segments").encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


MOMENTS = {
    # what to watch: a function of the session dir whose change is the moment to kill
    "segment rotation": lambda root: len(list((root / "segments").glob("seg_*.mp4"))),
    "manifest write": lambda root: _mtime(root / "manifest.json"),
    "transcript append": lambda root: _size(root / "transcript.jsonl"),
}


def test_kill9_at_rotation_manifest_write_and_transcript_append(cht: Cht, tmp_path):
    src = tmp_path / "talk.mp4"
    truth = [(norm(w), a, b) for w, a, b in make_speech_video(src, [1.0, 9.0, 17.0], 26.0)]
    root = cht.session_dir("app")
    for n, (moment, watch) in enumerate(MOMENTS.items()):
        args = ["record", "--no-ui", "--language", "en", "--max-segment", "2s", "--session", "app", str(src)]
        proc = cht.start(*args[:-1], *(["--append"] if n else []), args[-1])
        wait_for(lambda: (root / "manifest.json").exists() and proc.poll() is None, 30, what="recording")
        time.sleep(3.0 if moment != "transcript append" else 0.0)
        before = watch(root)
        wait_for(lambda: watch(root) != before or proc.poll() is not None, 60, 0.002, what=moment)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not _writers_of(root), 20, what="the orphaned recorder to finish")
        written = [line.to_json() for line in read_lines(root / "transcript.jsonl")]
        files = sorted(p.name for p in (root / "segments").glob("seg_*.mp4"))

        result = cht.run("rebuild", "app")
        assert result.returncode == 0, (moment, result.stderr)
        manifest = cht.manifest("app")
        assert manifest["state"] == "crashed", moment
        listed = [Path(s["file"]).name for s in manifest["segments"]]
        # every file that holds media is in the manifest (an empty one, cut by the kill, is gone)
        assert listed == sorted(p.name for p in (root / "segments").glob("seg_*.mp4")), moment
        assert set(listed) <= set(files)
        for seg in manifest["segments"]:
            decode_fully(root / seg["file"])
        assert [line.to_json() for line in read_lines(root / "transcript.jsonl")] == written, moment

    # a kill in the middle of an append leaves a torn line: it is ignored, with a warning
    with open(root / "transcript.jsonl", "a") as f:
        f.write('{"chunk": 999, "start": 12.5, "end": 13')
    with open(root / "frames.jsonl", "a") as f:
        f.write('{"t": 12.5, "file": "frames/0000')
    exported = cht.run("export", "app", "-f", "txt")
    assert exported.returncode == 0, exported.stderr
    assert "cut short" in exported.stderr
    info = cht.run("transcribe", "app", "--language", "en", timeout=300)
    assert info.returncode == 0, info.stderr
    index = json.loads((root / "transcript" / "index.json").read_text())
    assert index["complete"] and not index["pending"], index  # nothing recorded is left untranscribed
    heard = {w for w, _, _ in transcript_words(root)}
    assert heard and heard <= {w for w, _, _ in truth} | {"fail", "failed"}, heard  # the talk's words only
