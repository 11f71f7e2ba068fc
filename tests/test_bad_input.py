"""Every bad input the foundation issue names: a clear one-line error, exit code 2, nothing
half-made left behind — and the two that are not errors (no audio, no video)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import av
import pytest

from conftest import Cht, decode_fully, make_media, recorder_pid, wait_for

pytestmark = pytest.mark.slow


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cht: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_file(cht: Cht):
    assert_one_line_error(cht.run("record", "/no/such/lecture.mp4"), "no such file")
    assert cht.sessions() == []


def test_file_that_is_not_media(cht: Cht, tmp_path):
    fake = tmp_path / "slides.mp4"
    fake.write_bytes(b"%PDF-1.4 not a video\n" * 200)
    assert_one_line_error(cht.run("record", str(fake)), "not a media file")
    assert cht.sessions() == []


def test_unreachable_url(cht: Cht):
    result = cht.run("record", f"http://127.0.0.1:{free_port()}/live/index.m3u8")
    assert_one_line_error(result, "cannot record", "Connection refused")
    assert cht.sessions() == []


def test_listener_port_already_in_use(cht: Cht):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cht.run("record", f"rtmp://127.0.0.1:{port}/live/key")
    assert_one_line_error(result, "port is in use")
    assert cht.sessions() == []


def test_bad_values(cht: Cht):
    assert_one_line_error(cht.run("record", "demo", "--max-segment", "soon"), "not a duration")
    assert_one_line_error(cht.run("record", "demo", "--session", "../../etc"), "not a valid session id")
    assert_one_line_error(cht.run("info", "no-such-session"), "no session")
    assert_one_line_error(cht.run("rebuild", "a/b"), "not a valid session id")
    assert_one_line_error(cht.run("record", "demo", "--append"), "--session")
    assert_one_line_error(cht.run("record", "demo", "--min-free", "lots"), "not a size")
    assert_one_line_error(cht.run("record", "demo", "--commit-delay", "-1"), "--commit-delay")
    assert cht.sessions() == []


def test_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir should be")
    result = Cht(blocker / "data").run("record", str(make_media(tmp_path / "a.mp4", 2)))
    assert_one_line_error(result, "not writable", "--data-dir")


@pytest.mark.parametrize("video, audio", [(True, False), (False, True)])
def test_one_sided_sources_record_what_they_have(cht: Cht, tmp_path, video, audio):
    src = make_media(tmp_path / "one.mp4", 3, video=video, audio=audio)
    result = cht.run("record", "--fast", "--session", "one", str(src))
    assert result.returncode == 0, result.stderr
    manifest = cht.manifest("one")
    assert manifest["state"] == "stopped" and manifest["duration"] == pytest.approx(3.0, abs=0.1)
    path = cht.session_dir("one") / manifest["segments"][0]["file"]
    with av.open(str(path)) as c:
        assert {s.type for s in c.streams} == ({"video"} if video else {"audio"})
    decode_fully(path)


def test_existing_session_is_refused_unless_appended(cht: Cht, tmp_path):
    src = make_media(tmp_path / "a.mp4", 2)
    assert cht.run("record", "--session", "talk", str(src)).returncode == 0
    first = cht.manifest("talk")
    assert_one_line_error(cht.run("record", "--session", "talk", str(src)), "already exists", "--append")
    assert cht.manifest("talk") == first  # untouched

    time.sleep(1.5)
    result = cht.run("record", "--fast", "--session", "talk", "--append", str(src))
    assert result.returncode == 0, result.stderr
    after = cht.manifest("talk")
    assert after["segments"][0] == first["segments"][0]
    assert len(after["segments"]) == 2 and after["segments"][1]["run"] == 1
    (gap,) = after["gaps"]
    assert gap["start"] == pytest.approx(2.0, abs=0.1) and 1.5 <= gap["end"] - gap["start"] <= 10
    assert after["segments"][1]["global_start"] == gap["end"]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    # the only tests of exit code 1 on a full disk: a runner that cannot mount a 12 MiB tmpfs
    # (CI runs as root) fails here rather than passing without them
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (run as root): {done.stderr.decode().strip()}", pytrace=False)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _check_disk_full_session(cht: Cht) -> dict:
    manifest = cht.manifest("full")
    assert manifest["state"] == "stopped" and manifest["reason"].startswith("disk full")
    assert manifest["segments"], "what was written is kept"
    for seg in manifest["segments"]:
        counts = decode_fully(cht.session_dir("full") / seg["file"])
        assert counts["video"] == pytest.approx(seg["duration"] * 30, abs=2)
    return manifest


def test_disk_full_while_recording_stops_cleanly(small_disk, tmp_path):
    src = make_media(tmp_path / "big.mp4", 20, size="1280x720")
    cht = Cht(small_disk / "data")
    result = cht.run("record", "--fast", "--min-free", "0", "--session", "full", str(src))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    manifest = _check_disk_full_session(cht)
    assert "no space left" in manifest["reason"]


def test_min_free_stops_before_the_disk_is_full(small_disk, tmp_path):
    src = make_media(tmp_path / "big.mp4", 20, size="1280x720")
    cht = Cht(small_disk / "data")
    result = cht.run("record", "--min-free", "7M", "--session", "full", str(src))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    manifest = _check_disk_full_session(cht)
    assert "less than" in manifest["reason"]
    assert manifest["duration"] < 19
    # Refused before it starts while less is free than asked. Not "7M" again: the run stops
    # once less than that is free, and what it releases as it ends lifts free space back just
    # over (7.07 MiB after it here, with 0.5 s fragments): a second run then starts and stops 1 s in.
    wanted = shutil.disk_usage(small_disk).free // 2**20 + 1
    refused = cht.run("record", "--min-free", f"{wanted}M", str(src))
    assert_one_line_error(refused, "free", "--min-free")


def test_a_recorder_that_keeps_failing_ends_the_session_with_exit_1(cht: Cht, tmp_path):
    """Once the recording is live, each recorder is killed before its first fragment lands:
    three runs in a row without media end the session as crashed, and `cht record` exits 1
    (README: exit codes). (A source that fails before any media is a start-up error: exit 2.)"""
    src = make_media(tmp_path / "src.mp4", 60)
    proc = cht.start("record", "--no-analyze", "--session", "failing", str(src))
    wait_for(lambda: (cht.session_dir("failing") / "manifest.json").exists(), 30, what="the recording to go live")
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        pid = recorder_pid(proc.pid)
        if pid is not None and pid not in killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.01)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (proc.returncode, err[-500:])
    assert len(killed) == 4 and "Traceback" not in err, (killed, err[-500:])
    manifest = cht.manifest("failing")
    assert manifest["state"] == "crashed" and "keeps failing" in manifest["reason"], manifest
