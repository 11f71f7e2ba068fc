"""`--on-segment CMD` with real recordings: each finished segment handed to a real program
(path, session id) in order, a slow one never holding up the recording, a failing one logged;
after SIGTERM of `cht record` and of `cht ingest`, every segment has been handed over and
no ffmpeg and no hook process is left."""

from __future__ import annotations

import shlex
import signal
import socket
from pathlib import Path

from conftest import Cht, descendants, listening, make_media, part, still_running, wait_for
from test_clips import cli, in_session, start_alone
from test_web import free_port

HOOK = """#!/bin/sh
# cht's --on-segment: note the arguments, take a while, refuse the second segment
echo "start $1 $2" >> "{log}"
sleep {sleep}
case "$1" in *seg_00001.mp4) echo "upload refused for $1"; exit 3;; esac
echo "done $1 $2" >> "{log}"
"""


def hook(tmp: Path, sleep: float) -> tuple[Path, Path]:
    log = tmp / "hook.log"
    script = tmp / "upload hook.sh"  # a space in the path: no shell must split it
    script.write_text(HOOK.format(log=log, sleep=sleep))
    script.chmod(0o755)
    return script, log


def entries(log: Path, kind: str) -> list[list[str]]:
    rows = log.read_text().splitlines() if log.exists() else []
    return [row.split(" ")[1:] for row in rows if row.startswith(kind + " ")]


def test_a_slow_hook_never_holds_up_the_recording_and_a_failure_is_logged(tmp_path):
    cht = Cht(tmp_path / "data")
    src = make_media(tmp_path / "a.mp4", 4, size="320x180", gop=15)
    script, log = hook(tmp_path, 1.2)
    proc = start_alone(cht, "record", str(src), "--session", "hooked", "--no-analyze", "--no-ui", "--max-segment", "1s",
                     "--on-segment", shlex.quote(str(script)))
    manifest = cht.session_dir("hooked") / "manifest.json"
    wait_for(lambda: manifest.exists() and cht.manifest("hooked")["state"] == "stopped", 30, what="the end of source")
    segments = [s["file"] for s in cht.manifest("hooked")["segments"]]
    assert len(segments) >= 4
    assert len(entries(log, "start")) < len(segments), "the recording ended while the hook still had work"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert in_session(proc.pid) == [], "no ffmpeg and no hook may outlive cht record"
    root = cht.session_dir("hooked")
    assert entries(log, "start") == [[str(root / f), "hooked"] for f in segments], "each segment once, in order"
    assert [e[0] for e in entries(log, "done")] == [str(root / f) for f in segments if not f.endswith("1.mp4")]
    assert f"--on-segment ran {len(segments)} time(s), 1 failed" in err
    session_log = (root / "session.log").read_text()
    assert "--on-segment seg_00001.mp4: exit code 3: upload refused for" in session_log
    assert cht.manifest("hooked")["gaps"] == []


def test_sigterm_hands_over_what_was_recorded_and_leaves_no_process(tmp_path):
    cht = Cht(tmp_path / "data")
    src = make_media(tmp_path / "a.mp4", 30, size="320x180", gop=15)
    script, log = hook(tmp_path, 0.3)
    proc = cht.start("record", str(src), "--session", "cut", "--no-analyze", "--no-ui", "--max-segment", "1s",
                     "--on-segment", shlex.quote(str(script)))
    wait_for(lambda: len(entries(log, "start")) >= 2, 30, what="two segments handed over")
    children = descendants(proc.pid)
    assert any("ffmpeg" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace") for pid, _ in children)
    code, _, err = Cht.stop(proc, signal.SIGTERM)
    assert code == 0, err
    segments = [s["file"] for s in cht.manifest("cut")["segments"]]
    assert [e[0] for e in entries(log, "start")] == [str(cht.session_dir("cut") / f) for f in segments]
    assert still_running(children) == []


def test_ingest_runs_the_hook_for_each_room_and_reaps_everything_at_sigterm(tmp_path):
    cht = Cht(tmp_path / "data")
    script, log = hook(tmp_path, 0.1)
    port = free_port()
    service = cht.start("ingest", "--listen", f"tcp://127.0.0.1:{port}", "--no-analyze", "--no-ui", "--no-relay",
                        "--max-segment", "1s", "--on-segment", shlex.quote(str(script)))
    try:
        stream = part(tmp_path / "push.ts", 3, "320x180", 44100, gop=15)
        wait_for(lambda: listening(port), 30, what="the listener")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(stream.read_bytes())
        wait_for(lambda: len(entries(log, "start")) >= 1, 30, what="a finished segment handed over")
        children = descendants(service.pid)
    finally:
        code, _, err = Cht.stop(service, signal.SIGTERM)
    assert code == 0, err
    (session,) = cht.sessions()
    segments = [s["file"] for s in cht.manifest(session)["segments"]]
    assert len(segments) >= 2
    assert entries(log, "start") == [[str(cht.session_dir(session) / f), session] for f in segments]
    assert still_running(children) == []


def test_a_command_that_cannot_run_is_one_line_before_anything_records(tmp_path, capsys):
    data = tmp_path / "data"
    src = make_media(tmp_path / "a.mp4", 1, size="160x90")
    for args, says in [(("record", str(src), "--no-ui", "--on-segment", "no-such-uploader"), "not a program"),
                       (("record", str(src), "--no-ui", "--on-segment", "'unclosed"), "quote it"),
                       (("ingest", "--listen", "tcp://127.0.0.1:1", "--no-ui", "--on-segment", ""), "needs a command")]:
        code, _, err = cli(capsys, data, *args)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (data / "sessions").exists() or not any((data / "sessions").iterdir())
