"""Live and offline analysis: slide changes against known truth, waveform peaks on the
global clock across a recorder restart, one-sided sources, capture over the control
channel, and a corrupt fragment that is skipped."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time

import av
import pytest

from cht.analyze.reader import PcmChunk, SegmentDecoder, VideoSample
from cht.analyze.scenes import SlideChangeDetector, grey, read_frames
from cht.media.ffmpeg import ffmpeg_exe
from conftest import Cht, make_media, recorder_pid, wait_for
from synthetic import f1, lecture, render

pytestmark = pytest.mark.slow

LECTURE = dict(duration=44, slide_every=10, bullet_every=3.5, cuts=((17, 3), (34, 3)))


@pytest.fixture(scope="module")
def lecture_video(tmp_path_factory):
    spec = lecture(**LECTURE)
    path = render(spec, tmp_path_factory.mktemp("lecture") / "lecture.mp4")
    bullet_only = [t for s in spec.slides for t, _ in s.bullets]
    assert len(spec.changes) >= 12 and len(bullet_only) >= 4 and len(spec.cuts) == 2
    return spec, path


def scene_times(session_dir) -> list[float]:
    return [f.t for f in read_frames(session_dir) if f.kind == "scene"]


def test_slide_changes_live_and_offline(cht: Cht, lecture_video):
    spec, path = lecture_video
    result = cht.run("record", "--session", "lec", str(path), timeout=180)  # real pace: 44 s
    assert result.returncode == 0, result.stderr
    root = cht.session_dir("lec")
    live = scene_times(root)
    precision, recall, score = f1(live, spec.changes)
    assert score >= 0.95, f"live F1 {score:.3f} (P {precision:.2f} R {recall:.2f}): {live} vs {spec.changes}"
    records = read_frames(root)
    assert records[0].kind == "start" and [r.kind for r in records].count("start") == 1
    for record in records:
        assert (root / record.file).stat().st_size > 1000 and (root / record.thumb).exists()
        with av.open(str(root / record.file)) as c:
            assert (c.streams.video[0].width, c.streams.video[0].height) == (1280, 720)

    result = cht.run("analyze", "lec")
    assert result.returncode == 0, result.stderr
    offline = scene_times(root)
    assert f1(offline, spec.changes)[2] >= 0.95, offline
    assert len(read_frames(root)) == len(list((root / "frames").glob("*.thumb.jpg")))  # old files replaced


def test_pointer_cursor_and_webcam_alone_are_not_scenes(tmp_path):
    spec = lecture(duration=20, slide_every=30, bullet_every=30, cuts=())
    path = render(spec, tmp_path / "still.mp4", audio=False)
    detector = SlideChangeDetector()
    found = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for i, frame in enumerate(c.decode(stream)):
            if i % 8 == 0:
                d = detector.process(float(frame.pts * stream.time_base), grey(frame, 320))
                if d:
                    found.append(d)
    assert [d.kind for d in found] == ["start"]


def read_audiowaveform_json(path) -> dict:
    """A reader that follows the audiowaveform JSON spec (version 2)."""
    data = json.loads(path.read_text())
    assert data["version"] == 2
    assert set(data) >= {"version", "channels", "sample_rate", "samples_per_pixel", "bits", "length", "data"}
    assert data["bits"] in (8, 16) and data["channels"] >= 1
    assert len(data["data"]) == 2 * data["length"] * data["channels"]
    limit = 2 ** (data["bits"] - 1)
    assert all(-limit <= v < limit for v in data["data"])
    return data


def test_waveform_peaks_stay_on_the_global_clock_across_a_restart(cht: Cht, tmp_path):
    src = tmp_path / "bursts.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
                    "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=20",
                    "-f", "lavfi", "-i", "aevalsrc='if(lt(mod(t,4),1),0.8*sin(2*PI*1000*t),0)':s=48000:d=20",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-shortest", str(src)],
                   check=True)
    proc = cht.start("record", "--session", "bursts", str(src))
    wait_for(lambda: (cht.session_dir("bursts") / "manifest.json").exists(), 15, what="start")
    time.sleep(5.5)
    os.kill(recorder_pid(proc.pid), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    manifest = cht.manifest("bursts")
    assert len(manifest["segments"]) == 2 and len(manifest["gaps"]) == 1
    gap = manifest["gaps"][0]
    audio = cht.session_dir("bursts") / "audio"
    for spp in (160, 1600, 16000):
        name = "waveform.json" if spp == 160 else f"waveform-{spp}.json"
        level = read_audiowaveform_json(audio / name)
        assert level["samples_per_pixel"] == spp and level["sample_rate"] == 16000
        assert level["length"] == pytest.approx(manifest["duration"] * 16000 / spp, abs=2)
    wave = read_audiowaveform_json(audio / "waveform.json")
    peak = [max(abs(wave["data"][2 * i]), abs(wave["data"][2 * i + 1])) for i in range(wave["length"])]
    onsets = [i for i in range(1, len(peak)) if peak[i] > 20 and peak[i - 1] <= 20]
    px = 16000 / wave["samples_per_pixel"]
    expected = [s for s in (4, 8, 12, 16) if not gap["start"] - 0.1 <= s <= gap["end"] + 0.1]
    assert any(s > gap["end"] for s in expected), "a burst after the restart is checked"
    for s in expected:
        assert any(abs(o - s * px) <= 1 for o in onsets), f"burst at {s} s: onsets {onsets}"
    for o in onsets:  # nothing is heard inside the gap
        assert not gap["start"] * px + 1 < o < gap["end"] * px - 1


@pytest.mark.parametrize("video, audio", [(True, False), (False, True)])
def test_one_sided_sources_analyse(cht: Cht, tmp_path, video, audio):
    src = make_media(tmp_path / "one.mp4", 4, video=video, audio=audio)
    assert cht.run("record", "--session", "one", str(src)).returncode == 0
    root = cht.session_dir("one")
    assert cht.run("analyze", "one").returncode == 0
    frames = read_frames(root)
    wave = read_audiowaveform_json(root / "audio" / "waveform.json")
    if video:
        assert frames and frames[0].kind == "start" and wave["length"] == 0
    else:
        assert frames == [] and wave["length"] == pytest.approx(400, abs=2)


def test_capture_now_over_the_control_channel(cht: Cht):
    proc = cht.start("demo", "--session", "cap")
    root = cht.session_dir("cap")
    wait_for(lambda: any(f.kind == "start" for f in read_frames(root)), 30, what="first keyframe")
    result = cht.run("capture")
    assert result.returncode == 0, result.stderr
    assert "captured cap" in result.stdout
    manual = [f for f in read_frames(root) if f.kind == "manual"]
    assert len(manual) == 1 and (root / manual[0].file).exists()
    busy = cht.run("rebuild", "cap")
    assert busy.returncode == 2 and "is recording" in busy.stderr
    code, out, err = Cht.stop(proc)
    assert code == 0, err
    assert not (root / "control.sock").exists()
    refused = cht.run("capture", "cap")
    assert refused.returncode == 2 and "no running recording" in refused.stderr
    # Re-analysis replaces what analysis derived, never the user's own captures.
    assert cht.run("analyze", "cap").returncode == 0
    again = [f for f in read_frames(root) if f.kind == "manual"]
    assert again == manual and (root / manual[0].file).exists() and (root / manual[0].thumb).exists()


def test_a_corrupt_fragment_is_skipped_with_a_warning(tmp_path, caplog):
    src = make_media(tmp_path / "src.mp4", 6, gop=15)
    seg_dir = tmp_path / "rec"
    seg_dir.mkdir()
    from cht.media.ffmpeg import recorder_args
    subprocess.run(recorder_args(["-i", str(src)], ["-map", "0:v:0", "-map", "0:a:0"], ["-c", "copy"], seg_dir,
                                 start_number=0, metadata={}, max_segment_s=600, fragment_s=0.5), check=True)
    seg = seg_dir / "seg_00000.mp4"
    data = bytearray(seg.read_bytes())
    third_moof = [i for i in range(len(data) - 4) if data[i:i + 4] == b"moof"][2]
    for i in range(third_moof + 8, third_moof + 120):  # wreck the fragment's header
        data[i] = 0xFF
    seg.write_bytes(bytes(data))
    decoder = SegmentDecoder(seg, 100.0, video_fps=30)
    with caplog.at_level(logging.WARNING, logger="cht.analyze"):
        items = list(decoder.poll()) + list(decoder.finish())
    video = [i.t for i in items if isinstance(i, VideoSample)]
    audio = [i for i in items if isinstance(i, PcmChunk)]
    assert "corrupt fragment was skipped" in caplog.text or "skipped a fragment" in caplog.text
    assert video and min(video) >= 100.0 and max(video) > 104.0  # decoding went on after it
    assert audio
