"""The incremental fMP4 reader against PyAV, and the torn-fragment repair."""

import os
import signal
import subprocess
import time

import av
import pytest

from cht.media import fmp4
from cht.media.ffmpeg import recorder_args
from conftest import decode_fully, make_media, wait_for


def _record(src, out_dir, seconds_before_kill=None):
    """Record `src` at real pace; with `seconds_before_kill`, kill -9 the writer that long after
    its first fragment landed. Returns the segment and, for a kill, (media in complete fragments
    when the first landed, media in complete fragments just before the kill)."""
    args = recorder_args(["-nostdin", "-readrate", "1", "-i", str(src)], ["-map", "0:v:0?", "-map", "0:a:0?"],
                         ["-c", "copy"], out_dir, start_number=0, metadata={"cht_run": "0"},
                         max_segment_s=1800, fragment_s=1.0)
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    seg = out_dir / "seg_00000.mp4"
    if seconds_before_kill is None:
        proc.wait(timeout=60)
        return seg, None
    first = wait_for(lambda: seg.exists() and fmp4.scan(seg).fragments and fmp4.scan(seg).duration, 20, 0.005,
                     what="the first fragment")
    time.sleep(seconds_before_kill)
    before = fmp4.scan(seg).duration
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return seg, (first, before)


def test_duration_matches_pyav(tmp_path):
    src = make_media(tmp_path / "src.mp4", 4)
    seg, _ = _record(src, tmp_path)
    scan = fmp4.scan(seg)
    with av.open(str(seg)) as c:
        expected = c.duration / 1_000_000
    assert scan.duration == pytest.approx(expected, abs=0.01)
    assert scan.kinds() == {"video", "audio"}
    assert scan.complete_bytes == os.path.getsize(seg)
    assert scan.fragments >= 3


def test_incremental_scan_equals_full_scan(tmp_path):
    src = make_media(tmp_path / "src.mp4", 3)
    seg, _ = _record(src, tmp_path)
    data = seg.read_bytes()
    grow = tmp_path / "grow.mp4"
    partial = fmp4.Fmp4Scan(grow)
    for cut in range(0, len(data) + 50_000, 50_000):
        grow.write_bytes(data[:cut])
        partial.update()
    full = fmp4.scan(seg)
    assert partial.duration == pytest.approx(full.duration)
    assert partial.fragments == full.fragments


def test_killed_writer_is_cut_back_to_a_decodable_file(tmp_path):
    """DESIGN.md: a kill loses at most the fragment being written (1 s here)."""
    src = make_media(tmp_path / "src.mp4", 10)
    seg, (first, before) = _record(src, tmp_path, seconds_before_kill=2.6)
    fmp4.cut_to_complete(seg)
    counts = decode_fully(seg)
    kept = fmp4.scan(seg).duration
    assert kept >= before, "every fragment complete before the kill is kept"
    # the writer had been given `first` + 2.6 s of media (it reads at real pace): all of it is
    # kept but the fragment in progress, at most 1 s (measured here: 0.58 s lost)
    assert first + 2.6 - kept <= 1.0 + 0.05, (first, kept)
    assert counts["video"] == pytest.approx(kept * 30, abs=2)  # kept: the longer stream (audio)
    assert fmp4.cut_to_complete(seg) == 0  # idempotent


def test_garbage_is_not_media(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x10abcd" + os.urandom(100))
    scan = fmp4.scan(junk)
    assert scan.duration == 0 and not scan.has_moov
    assert fmp4.cut_to_complete(junk) == 0
