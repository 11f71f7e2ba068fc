"""kill -9 of `cht record` itself, timed to land on the moments that matter: a segment
rotation, a manifest write (while its temporary file exists, when the poll catches it), a
transcript append. What the kill leaves is checked *before any repair*: manifest.json is
whole and every segment it lists decodes to its end; every transcript line is whole but the
last, and says the talk's words at their times (each run's times: from the rebuilt manifest);
at most the last two segments (the one a rotation just closed, the one it began) are missing
from the manifest. Then the repairs, and what each restores: `cht rebuild` lists the segments
the manifest missed, cut back to their last complete fragment (it never touches the
transcript); `cht transcribe` transcribes what the kills left untranscribed and keeps every
line written before. Torn last lines of transcript.jsonl and frames.jsonl are ignored with a
warning."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from cht.transcribe.store import read_lines
from conftest import Cht, decode_fully, wait_for
from speech import make_speech_video, norm

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


def _bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


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
    # during the write: the temporary file exists between open and rename (or, if the poll
    # misses that window, the moment after the rename)
    "manifest write": lambda root: (root / ".manifest.json.tmp").exists() or _mtime(root / "manifest.json"),
    "transcript append": lambda root: _size(root / "transcript.jsonl"),
}


def _as_left(root: Path, truth: list, moment: str, kills: int) -> list[str]:
    """What a kill left, checked before any repair; returns the transcript's rows."""
    manifest = json.loads((root / "manifest.json").read_text())  # whole: written to a temp file, renamed
    files = sorted(p.name for p in (root / "segments").glob("seg_*.mp4"))
    listed = [Path(s["file"]).name for s in manifest["segments"]]
    assert set(listed) <= set(files), (moment, listed, files)
    for name in listed:
        decode_fully(root / "segments" / name)  # closed: whole (an unlisted one may end torn)
    missing = [f for f in files if f not in listed and (root / "segments" / f).stat().st_size > 0]
    # the manifest is saved on the watchdog's tick after a rotation: a kill between the two
    # leaves the segment just closed and the one just begun unlisted, never more
    assert len(missing) <= 2, (moment, "more than the last two segments are unlisted", missing)
    rows = (root / "transcript.jsonl").read_bytes().split(b"\n") if (root / "transcript.jsonl").exists() else []
    whole, torn = [], 0
    for row in rows[:-1]:  # each ends in a newline: whole, or torn by an earlier kill mid-append
        try:
            whole.append(json.loads(row))
        except ValueError:
            torn += 1
    assert torn <= kills, (moment, f"{torn} torn lines after {kills} kills")
    return [json.dumps(line, sort_keys=True) for line in whole]


def _says_the_talk(rows: list[str], truth: list, manifest: dict, moment: str) -> None:
    """Every word is the talk's, at its time in the run that heard it: each `--append` run
    plays the file from its start, so its words are the file's shifted by the run's start (a
    gap's end; the manifest of the run being killed may not list its gap yet, so the check
    runs on the rebuilt manifest). Compared with the file's times alone, a run's "Ever" passed
    or failed by where the kill happened to start the next run. A word the model itself doubts
    (p < 0.1, as the " a" it once heard before "failed" in audio a kill had cut) is a mishearing,
    not a misplaced word; every word it is sure of must be the talk's, at its time."""
    starts = [0.0] + [gap["end"] for gap in manifest["gaps"]]
    said = [(t, run + a) for run in starts for t, a, _ in truth]
    for line in map(json.loads, rows):
        for w in line.get("words", []):
            heard = norm(w["word"])
            assert heard in ("fail", "failed") or w["p"] < 0.1 \
                or any(heard == t and abs(w["start"] - at) <= 1.0 for t, at in said), (moment, w, starts)


def test_kill9_at_rotation_manifest_write_and_transcript_append(cht: Cht, tmp_path):
    src = tmp_path / "talk.mp4"
    truth = [(norm(w), a, b) for w, a, b in make_speech_video(src, [1.0, 9.0, 17.0], 26.0)]
    root = cht.session_dir("app")
    written: list[str] = []
    for n, (moment, watch) in enumerate(MOMENTS.items()):
        args = ["record", "--no-ui", "--language", "en", "--max-segment", "2s", "--session", "app", str(src)]
        proc = cht.start(*args[:-1], *(["--append"] if n else []), args[-1])
        wait_for(lambda: (root / "manifest.json").exists() and proc.poll() is None, 30, what="recording")
        time.sleep(3.0 if moment != "transcript append" else 0.0)
        before = watch(root)
        wait_for(lambda: watch(root) != before or proc.poll() is not None, 60, 0.001, what=moment)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not _writers_of(root), 20, what="the orphaned recorder to finish")
        if moment == "manifest write":  # a temporary file left behind: the kill came mid-write
            print("manifest write:", "killed during" if (root / ".manifest.json.tmp").exists() else "killed just after")
        rows = _as_left(root, truth, moment, n + 1)
        assert rows[:len(written)] == written, (moment, "a line written before was changed")
        written = rows
        files = sorted(p.name for p in (root / "segments").glob("seg_*.mp4"))
        transcript = _bytes(root / "transcript.jsonl")

        result = cht.run("rebuild", "app")  # the repair: the manifest from the files
        assert result.returncode == 0, (moment, result.stderr)
        manifest = cht.manifest("app")
        assert manifest["state"] == "crashed", moment
        listed = [Path(s["file"]).name for s in manifest["segments"]]
        # every file that holds media is in the manifest (an empty one, cut by the kill, is gone)
        assert listed == sorted(p.name for p in (root / "segments").glob("seg_*.mp4")), moment
        assert set(listed) <= set(files)
        for seg in manifest["segments"]:
            decode_fully(root / seg["file"])
        assert _bytes(root / "transcript.jsonl") == transcript, "rebuild never touches the transcript"
        _says_the_talk(rows, truth, manifest, moment)  # the lines as the kill left them

    # a kill in the middle of an append leaves a torn line: it is ignored, with a warning
    with open(root / "transcript.jsonl", "a") as f:
        f.write('{"chunk": 999, "start": 12.5, "end": 13')
    with open(root / "frames.jsonl", "a") as f:
        f.write('{"t": 12.5, "file": "frames/0000')
    exported = cht.run("export", "app", "-f", "txt")
    assert exported.returncode == 0, exported.stderr
    assert "cut short" in exported.stderr
    info = cht.run("transcribe", "app", "--language", "en", timeout=300)  # the repair of the transcript
    assert info.returncode == 0, info.stderr
    index = json.loads((root / "transcript" / "index.json").read_text())
    assert index["complete"] and not index["pending"], index  # nothing recorded is left untranscribed
    after = {json.dumps(json.loads(line.to_json()), sort_keys=True) for line in read_lines(root / "transcript.jsonl")}
    assert set(written) <= after, "cht transcribe keeps every line written before the kills"
    heard = {norm(w.word) for line in read_lines(root / "transcript.jsonl") for w in line.words
             if norm(w.word) and w.p >= 0.1}  # the model's doubted words: see _says_the_talk
    assert heard and heard <= {w for w, _, _ in truth} | {"fail", "failed"}, heard  # the talk's words only
