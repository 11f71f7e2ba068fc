"""`cht clip` on one real recorded session with two segments, a gap and a second run: stream
copy from the keyframe before FROM (how far, said), `--exact`, the transcript as a mov_text
track and a sidecar .vtt on the clip's clock, the gap named; bad ranges as one line; the
page's drag-to-clip and moment links in Chromium against the real server."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import webvtt
from playwright.sync_api import sync_playwright

from cht.media.ffmpeg import ffmpeg_exe, keyframe_times
from cht.session import epoch
from cht.transcribe.store import TranscriptLine, TranscriptStore, Word
from cht.web.app import UiState
from cht.web.server import WebServer
from conftest import CHT, Cht, decode_fully, make_media, wait_for
from test_web import ARGS, CHROMIUM, free_port

GAP_S = 2.5  # seconds of wall clock the second run is started late by (at least): the gap


def line(chunk: int, start: float, text: str) -> TranscriptLine:
    """A transcript line with one word per 0.4 s from `start`."""
    words = [Word(round(start + 0.4 * i, 3), round(start + 0.4 * i + 0.35, 3), " " + w, 0.9)
             for i, w in enumerate(text.split())]
    return TranscriptLine(chunk, words[0].start, words[-1].end, text, words, [start, words[-1].end + 0.1])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """8 s (keyframes every 2 s) in 4 s segments, a gap, then 8 s more (`--append`), then 2 s of a
    smaller picture; a transcript with known lines on both sides of the gap."""
    tmp = tmp_path_factory.mktemp("clips")
    src = make_media(tmp / "a.mp4", 8, gop=60)
    cht = Cht(tmp / "data")
    first = cht.run("record", str(src), "--session", "talk", "--fast", "--no-analyze", "--no-ui",
                    "--max-segment", "4s")
    assert first.returncode == 0, first.stderr
    origin = epoch(cht.manifest("talk")["segments"][0]["started_at"])  # wall clock of global time 0
    time.sleep(max(0.0, origin + 8 + GAP_S - time.time()))  # appended this late: the pause becomes the gap
    second = cht.run("record", str(src), "--session", "talk", "--append", "--fast", "--no-analyze", "--no-ui",
                     "--max-segment", "4s")
    assert second.returncode == 0, second.stderr
    small = make_media(tmp / "small.mp4", 2, size="320x180", gop=30)  # a third run from another source
    third = cht.run("record", str(small), "--session", "talk", "--append", "--fast", "--no-analyze", "--no-ui")
    assert third.returncode == 0, third.stderr
    manifest = cht.manifest("talk")
    assert len(manifest["segments"]) == 5 and manifest["segments"][4]["run"] == 2, manifest
    assert manifest["gaps"][0]["end"] - manifest["gaps"][0]["start"] >= GAP_S - 0.1, manifest
    gap = manifest["gaps"][0]
    store = TranscriptStore(cht.session_dir("talk"))
    for chunk, (t, text) in enumerate([(1.0, "alpha one"), (5.2, "bravo two three"),
                                       (gap["end"] + 1.0, "delta four")]):
        store.append(line(chunk, t, text))
    return cht, manifest


def cli(capsys, data_dir: Path, *args: str) -> tuple[int, str, str]:
    """The real `cht` entry point run in this process (no interpreter start-up: ~1 s a call on
    a busy 2-core runner): exit code, stdout, stderr."""
    import sys

    from cht.cli import main

    argv, sys.argv = sys.argv, ["cht", "--data-dir", str(data_dir), *args]
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def in_session(sid: int) -> list[str]:
    """Command lines of the live processes in session `sid` (a command started with
    start_new_session=True, so its children stay findable after it exits), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            continue
    return found


def start_alone(cht: Cht, *args: str) -> subprocess.Popen:
    """`cht ARGS` in a session of its own: `in_session(proc.pid)` lists whatever it left running."""
    return subprocess.Popen([*CHT, *args], env=cht.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def run_reaped(cht: Cht, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `cht ARGS` to its end and check it left no process behind (ffmpeg, a hook...)."""
    proc = start_alone(cht, *args)
    out, err = proc.communicate(timeout=timeout)
    left = in_session(proc.pid)
    assert left == [], f"`cht {args[0]}` left processes running: {left}"
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def first_frame(path: Path, at: float = 0.0) -> np.ndarray:
    """The first decoded picture at or after `at` seconds of the file, as grey pixels."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= at - 0.001:
                return frame.to_ndarray(format="gray").astype(int)
    raise AssertionError(f"no frame at {at} s in {path}")


def secs(caption) -> float:
    """A WebVTT caption's start in seconds (webvtt's own `start_in_seconds` drops the milliseconds)."""
    h, m, rest = caption.start.split(":")
    return int(h) * 3600 + int(m) * 60 + float(rest)


def subtitle_texts(clip: Path, tmp: Path) -> list[tuple[float, str]]:
    """The clip's own subtitle track, read back by ffmpeg."""
    out = tmp / f"{clip.stem}.track.vtt"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clip), "-map", "0:s:0", str(out)], check=True)
    return [(secs(c), c.text) for c in webvtt.read(str(out))]


def test_a_clip_over_segments_and_the_gap_starts_at_the_keyframe_and_carries_the_transcript(recorded, tmp_path):
    cht, manifest = recorded
    seg1, gap = manifest["segments"][1], manifest["gaps"][0]
    keyframe = seg1["global_start"] + max(k for k in keyframe_times(cht.session_dir("talk") / seg1["file"])
                                          if seg1["global_start"] + k <= 5.0 + 1e-6)
    end = gap["end"] + 3.0
    out = tmp_path / "clip.mp4"
    result = run_reaped(cht, "clip", "talk", "5", f"{end:.3f}", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"starts {5.0 - keyframe:.3f} s before FROM" in result.stderr
    assert f"gap: {gap['start']:.3f}–{gap['end']:.3f} s not recorded" in result.stderr
    counts = decode_fully(out)
    assert counts["video"] > 0 and counts["audio"] > 0
    parts = (gap["start"] - keyframe) + (end - gap["end"])
    with av.open(str(out)) as container:
        kinds = {s.type: s.codec_context.name for s in container.streams}
        length = container.duration / 1_000_000
    assert kinds == {"video": "h264", "audio": "aac", "subtitle": "mov_text"}
    assert abs(length - parts) < 0.15, (length, parts)
    # Stream copy: the clip's first picture is the session's keyframe, pixel for pixel.
    segment = cht.session_dir("talk") / seg1["file"]
    assert np.array_equal(first_frame(out), first_frame(segment, keyframe - seg1["global_start"]))
    # The transcript on the clip's clock, in the file and beside it: the gap is left out.
    sidecar = [(secs(c), c.text) for c in webvtt.read(str(out.with_suffix(".vtt")))]
    joined = gap["start"] - keyframe
    assert [text for _, text in sidecar] == ["bravo two three", f"[not recorded: {gap['end'] - gap['start']:.1f} s skipped]",
                                             "delta four"]
    assert abs(sidecar[0][0] - (5.2 - keyframe)) < 0.002
    assert abs(sidecar[1][0] - joined) < 0.002
    assert abs(sidecar[2][0] - (joined + 1.0)) < 0.002
    assert subtitle_texts(out, tmp_path) == sidecar


def test_exact_reencodes_only_up_to_the_next_keyframe_and_plays_across_the_join(recorded, tmp_path):
    cht, manifest = recorded
    out = tmp_path / "exact.mp4"
    result = run_reaped(cht, "clip", "talk", "0:05", "0:07", "-o", str(out), "--exact")
    assert result.returncode == 0, result.stderr
    seg1 = manifest["segments"][1]
    segment = cht.session_dir("talk") / seg1["file"]
    next_key = min(k for k in keyframe_times(segment) if seg1["global_start"] + k > 5.0)
    head = seg1["global_start"] + next_key - 5.0
    assert f"starts exactly at FROM (5.000 s; the first {head:.3f} s re-encoded" in result.stderr
    with av.open(str(out)) as container:
        frames = [(frame.time, frame.to_ndarray(format="gray").astype(int)) for frame in container.decode(video=0)]
    times = [t for t, _ in frames]
    # 2 s of 30 fps; the video may start a few ms in: the audio's first AAC frame starts before FROM
    assert len(times) == 2 * 30 and times[0] < 0.07 and abs(times[-1] - times[0] - 59 / 30) < 0.03, times
    assert max(b - a for a, b in zip(times, times[1:])) < 2.5 / 30, "no frame lost or doubled at the join"
    picture = frames[0][1]
    wanted = np.abs(picture - first_frame(segment, 5.0 - seg1["global_start"])).mean()
    keyframe = np.abs(picture - first_frame(segment, 0.0)).mean()
    assert wanted < 3 < keyframe, (wanted, keyframe)  # the head is re-encoded: close rather than equal
    # From the next keyframe on it is the session's own video, pixel for pixel.
    target = first_frame(segment, next_key)
    same = [i for i, (_, picture) in enumerate(frames) if np.array_equal(picture, target)]
    assert same and abs(same[0] - head * 30) <= 1, (same, head)
    assert [c.text for c in webvtt.read(str(out.with_suffix(".vtt")))] == ["bravo two three"]
    assert abs(secs(webvtt.read(str(out.with_suffix(".vtt")))[0]) - 0.2) < 0.002
    with sync_playwright() as p:  # a browser plays through the join (the copied part's own H.264 setup)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(out.as_uri())
        page.evaluate("(() => { const v = document.querySelector('video'); v.muted = true; v.play(); })()")
        wait_for(lambda: page.evaluate("document.querySelector('video').ended"), 15, what="the clip to play through")
        quality = page.evaluate("(() => { const v = document.querySelector('video'); const q = "
                                "v.getVideoPlaybackQuality(); return [v.error, q.totalVideoFrames, "
                                "q.corruptedVideoFrames, v.videoWidth]; })()")
        browser.close()
    assert quality[0] is None and quality[1] >= 55 and quality[2] == 0 and quality[3] == 640, quality


@pytest.mark.parametrize("args, says", [
    (("13", "14"), "it is all a gap"),
    (("1:00", "1:10"), "past the end"),
    (("7", "5"), "must be after FROM"),
    (("1:75", "2:00"), "not a time"),
    (("five", "9"), "not a time"),
    (("1", "3", "-o", "clip.avi"), "name an .mp4"),
])
def test_a_range_that_cannot_be_cut_is_one_line_and_writes_nothing(recorded, tmp_path, capsys, monkeypatch, args,
                                                                     says):
    cht, manifest = recorded
    if args[0] == "13":  # inside the gap, whatever its exact length
        gap = manifest["gaps"][0]
        args = (f"{gap['start'] + 0.1:.3f}", f"{gap['end'] - 0.1:.3f}")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, cht.data_dir, "clip", "talk", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cht: error: ") and says in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_the_page_drags_a_range_into_a_clip_and_links_every_moment(recorded, tmp_path):
    cht, manifest = recorded
    web = WebServer(UiState(cht.data_dir), host="127.0.0.1", port=free_port(), fixed_port=True)
    web.start()
    try:
        base = web.url(None).rstrip("/")
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/api/sessions/nosuch/clip", params={"from": 1, "to": 2}).status_code == 404
            bad = http.get("/api/sessions/talk/clip", params={"from": 7, "to": 5})
            assert bad.status_code == 422 and "must be after FROM" in bad.json()["detail"]
            assert "/api/sessions/{session_id}/clip" in http.get("/openapi.json").json()["paths"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            page.goto(f"{base}/session/talk?t=6")
            wait_for(lambda: page.evaluate("window.cht && window.cht.ready"), 15, what="the page")
            wait_for(lambda: page.evaluate("Math.abs(window.cht.globalTime() - 6) < 0.5"), 10, what="?t=6")
            wait_for(lambda: (page.get_attribute("#momentLink", "href") or "").endswith("/session/talk?t=6"), 5,
                     what=f"the moment link (it is {page.get_attribute('#momentLink', 'href')})")
            box = page.locator("#wave").bounding_box()
            view = page.evaluate("window.cht.state.view")
            x = lambda t: box["x"] + (t - view[0]) / (view[1] - view[0]) * box["width"]
            page.mouse.move(x(1.0), box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(x(3.0), box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            link = page.locator("#clipLink")
            assert link.is_visible()
            assert abs(page.evaluate("window.cht.globalTime()") - 6) < 0.5, "a drag must not seek"
            with page.expect_download() as info:
                link.click()
            saved = tmp_path / "from-page.mp4"
            info.value.save_as(saved)
            browser.close()
        with av.open(str(saved)) as container:
            length = container.duration / 1_000_000
        assert abs(length - 3.0) < 0.2, length  # 1.0–3.0 s from the keyframe at 0 s
        assert decode_fully(saved)["video"] > 0
    finally:
        web.stop()


def test_a_range_past_the_end_is_cut_to_the_end_and_says_so(recorded, tmp_path, capsys):
    cht, manifest = recorded
    out = tmp_path / "tail.mp4"
    code, said, err = cli(capsys, cht.data_dir, "clip", "talk", f"{manifest['duration'] - 1.5:.3f}", "1:00", "-o",
                          str(out))
    assert code == 0, err
    assert f"is past what is recorded: the clip ends at {manifest['duration']:.3f} s" in err
    assert f"–{manifest['duration']:.3f} s on the session's clock" in said
    with av.open(str(out)) as container:
        assert container.duration / 1_000_000 >= 1.5 - 0.05
        assert container.streams.video[0].codec_context.width == 320


def test_runs_whose_streams_differ_are_not_joined_by_stream_copy(recorded, tmp_path, capsys):
    cht, manifest = recorded
    joint = manifest["segments"][4]["global_start"]
    code, _, err = cli(capsys, cht.data_dir, "clip", "talk", f"{joint - 1:.3f}", f"{joint + 1:.3f}", "-o",
                       str(tmp_path / "joint.mp4"))
    assert code == 2 and "hold different streams (h264 640x360" in err and f"ending by {joint:.3f} s" in err, err
    assert list(tmp_path.iterdir()) == []
