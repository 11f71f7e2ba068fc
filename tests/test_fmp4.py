"""The incremental fMP4 reader against PyAV, and the torn-fragment repair."""

import os
import signal
import subprocess
import time

import av
import pytest

from cht.media import fmp4
from cht.media.ffmpeg import recorder_args
from conftest import decode_fully, make_media


def _record(src, out_dir, seconds_before_kill=None):
    args = recorder_args(["-nostdin", "-readrate", "1", "-i", str(src)], ["-map", "0:v:0?", "-map", "0:a:0?"],
                         ["-c", "copy"], out_dir, start_number=0, metadata={"cht_run": "0"},
                         max_segment_s=1800, fragment_s=1.0)
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    if seconds_before_kill is None:
        proc.wait(timeout=60)
    else:
        time.sleep(seconds_before_kill)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return out_dir / "seg_00000.mp4"


def test_duration_matches_pyav(tmp_path):
    src = make_media(tmp_path / "src.mp4", 4)
    seg = _record(src, tmp_path)
    scan = fmp4.scan(seg)
    with av.open(str(seg)) as c:
        expected = c.duration / 1_000_000
    assert scan.duration == pytest.approx(expected, abs=0.01)
    assert scan.kinds() == {"video", "audio"}
    assert scan.complete_bytes == os.path.getsize(seg)
    assert scan.fragments >= 3


def test_incremental_scan_equals_full_scan(tmp_path):
    src = make_media(tmp_path / "src.mp4", 3)
    seg = _record(src, tmp_path)
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
    src = make_media(tmp_path / "src.mp4", 10)
    seg = _record(src, tmp_path, seconds_before_kill=3.6)
    fmp4.cut_to_complete(seg)
    counts = decode_fully(seg)
    scan = fmp4.scan(seg)
    assert counts["video"] >= 60  # at least 2 s of 30 fps survived
    assert counts["video"] == pytest.approx(scan.duration * 30, abs=2)
    assert fmp4.cut_to_complete(seg) == 0  # idempotent


def test_garbage_is_not_media(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x10abcd" + os.urandom(100))
    scan = fmp4.scan(junk)
    assert scan.duration == 0 and not scan.has_moov
    assert fmp4.cut_to_complete(junk) == 0
