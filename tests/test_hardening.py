"""Issue 19, the parts that need no running service: repair that never destroys, manifests of
the wrong shape, paths in a session's own files that point out of it, an export that must not
delete the user's folder, the media route for manual captures, Host/Origin checks, and
private session dirs. Each test fails on the code before the fix."""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from cht.media import fmp4
from cht.media.ffmpeg import recorder_args
from cht.session import Session, list_sessions
from conftest import Cht, decode_fully, make_media

FPS = 30


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """12 s, a keyframe every second: 1 s fragments."""
    return make_media(tmp_path_factory.mktemp("src") / "src.mp4", 12, rate=FPS, gop=FPS)


def recorded(data_dir: Path, source: Path, session_id: str = "s") -> Session:
    """A session with one real segment, as the recorder writes it (faster than real time)."""
    session = Session.create(data_dir, session_id)
    args = recorder_args(["-nostdin", "-i", str(source)], ["-map", "0:v:0?", "-map", "0:a:0?"], ["-c", "copy"],
                         session.segments_dir, start_number=0,
                         metadata={"cht_run": "0", "cht_started_at": str(time.time()), "cht_source": "test"},
                         max_segment_s=1800, fragment_s=1.0)
    subprocess.run(args, check=True, stderr=subprocess.DEVNULL, timeout=60)
    session.rebuild()
    return session


def box_offsets(data: bytes, kind: bytes) -> list[int]:
    out, at = [], data.find(kind)
    while at != -1:
        out.append(at - 4)
        at = data.find(kind, at + 1)
    return out


# -- finding 3: a repair cuts only a torn tail and never deletes --

def test_a_corrupt_middle_fragment_loses_only_that_fragment(tmp_path, source):
    cht = Cht(tmp_path / "data")
    session = recorded(cht.data_dir, source)
    seg = session.segments_dir / "seg_00000.mp4"
    data = bytearray(seg.read_bytes())
    moof = box_offsets(bytes(data), b"moof")[3]
    data[moof:moof + 4] = struct.pack(">I", 0x7FFF0000)  # one flipped size field, fragment 4 of 13
    seg.write_bytes(data)
    result = cht.run("rebuild", "s")
    assert result.returncode == 0, result.stderr
    assert os.path.getsize(seg) == len(data)  # nothing cut: the damage is wrapped, not removed
    assert decode_fully(seg)["video"] >= (12 - 1.5) * FPS
    manifest = cht.manifest("s")
    assert manifest["duration"] == pytest.approx(12, abs=0.1)
    [gap] = manifest["gaps"]
    assert 0 < gap["end"] - gap["start"] <= 1.5 and gap["reason"]


def test_a_damaged_header_is_skipped_and_an_unreadable_file_set_aside(tmp_path, source):
    session = recorded(tmp_path / "data", source)
    seg = session.segments_dir / "seg_00000.mp4"
    data = bytearray(seg.read_bytes())
    data[0:8] = bytes(8)  # zeros over ftyp: the moov and every fragment are intact
    seg.write_bytes(data)
    assert session.rebuild().duration == pytest.approx(12, abs=0.1)
    assert decode_fully(seg)["video"] == 12 * FPS
    moov = data.find(b"moov") - 4
    data[moov:moov + 8] = bytes(8)  # now nothing can say what the fragments hold
    seg.write_bytes(data)
    manifest = session.rebuild()
    aside = session.segments_dir / "seg_00000.mp4.damaged"
    assert aside.read_bytes() == data  # set aside untouched, never deleted
    assert manifest.segments == [] and "set aside" in manifest.gaps[0].reason


def test_a_torn_last_fragment_is_still_cut(tmp_path, source):
    session = recorded(tmp_path / "data", source)
    seg = session.segments_dir / "seg_00000.mp4"
    data = seg.read_bytes()
    last = box_offsets(data, b"moof")[-1]
    seg.write_bytes(data[:last + 100])
    assert fmp4.repair(seg).cut == 100
    assert session.rebuild().gaps == [] and decode_fully(seg)["video"] >= 10 * FPS


# -- finding 7: a manifest of the wrong shape --

@pytest.mark.parametrize("bad", [{"version": 1}, [], {"version": 1, "id": "a", "source": "", "state": "stopped",
                                                      "segments": [{"file": "segments/seg_00000.mp4", "x": 1}]},
                                 "segments-escape"])
def test_a_wrong_shape_manifest_lists_as_damaged_and_rebuilds(tmp_path, source, bad):
    cht = Cht(tmp_path / "data")
    recorded(cht.data_dir, source, "good")
    damaged = recorded(cht.data_dir, source, "bad")
    if bad == "segments-escape":
        bad = damaged.load_manifest().to_dict()
        bad["segments"][0]["file"] = "../good/segments/seg_00000.mp4"
    damaged.manifest_path.write_text(json.dumps(bad))
    listed = dict((s.id, m) for s, m in list_sessions(cht.data_dir))
    assert listed["bad"] is None and listed["good"].duration > 11
    result = cht.run("sessions")
    assert result.returncode == 0 and "Traceback" not in result.stderr and "good" in result.stdout
    result = cht.run("rebuild", "bad")
    assert result.returncode == 0, result.stderr
    assert damaged.current_manifest().duration == pytest.approx(12, abs=0.1)


# -- permissions --

def test_session_dirs_and_written_files_are_private(tmp_path, source):
    session = recorded(tmp_path / "data", source)
    for path in (Session.sessions_dir(tmp_path / "data"), session.root, session.segments_dir):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE(session.manifest_path.stat().st_mode) == 0o600
