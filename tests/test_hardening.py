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


# -- findings 4 and 8: the web UI and the relay answer only their own pages --

def frame_record(t: float, file: str, thumb: str, kind: str = "manual") -> str:
    return json.dumps({"t": t, "file": file, "thumb": thumb, "score": 0.0, "kind": kind}) + "\n"


@pytest.fixture(scope="module")
def web(tmp_path_factory, source):
    """A real web server (uvicorn) on loopback over a session with a manual capture."""
    from cht.web.app import UiState
    from cht.web.server import WebServer

    data = tmp_path_factory.mktemp("web") / "data"
    session = recorded(data, source)
    (session.root / "frames").mkdir()
    for name in ("000003.000-manual.jpg", "000003.000-manual.thumb.jpg"):
        (session.root / "frames" / name).write_bytes(b"\xff\xd8jpeg")
    (session.root / "frames.jsonl").write_text(
        frame_record(3.0, "frames/000003.000-manual.jpg", "frames/000003.000-manual.thumb.jpg"))
    server = WebServer(UiState(data), host="127.0.0.1", port=_free_port())
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_manual_captures_are_served(web):
    import httpx

    listed = httpx.get(f"{web}/api/sessions/s").json()["frames"]
    assert [f["url"] for f in listed] == ["/media/s/frames/000003.000-manual.jpg"]
    for frame in listed:
        for url in (frame["url"], frame["thumb"]):
            response = httpx.get(web + url)
            assert response.status_code == 200 and response.content == b"\xff\xd8jpeg", url


def test_the_sessions_list_and_the_pictures_served_follow_their_files(tmp_path, source):
    """What the server caches per file (`web.summaries`: word counts, first thumbnails, the
    pictures a session lists) is read again when the file changes: a rewritten index, an
    appended keyframe, an index written the old way (indented)."""
    import httpx

    from cht.transcribe.store import INDEX, INDEX_VERSION, TranscriptIndex, TranscriptLine, Word
    from cht.web.app import UiState
    from cht.web.server import WebServer

    data = tmp_path / "data"
    session = recorded(data, source)
    (session.root / "frames").mkdir()
    for name in ("000001.000.jpg", "000001.000.thumb.jpg", "000005.000.jpg", "000005.000.thumb.jpg"):
        (session.root / "frames" / name).write_bytes(b"\xff\xd8jpeg")
    (session.root / "frames.jsonl").write_text(  # an unreadable line first: the first good record is shown
        "{not json\n" + frame_record(1.0, "frames/000001.000.jpg", "frames/000001.000.thumb.jpg", "start"))
    server = WebServer(UiState(data), host="127.0.0.1", port=_free_port())
    server.start()
    web = f"http://127.0.0.1:{server.port}"

    def listed() -> tuple[int, str]:
        (row,) = httpx.get(f"{web}/api/sessions").json()
        return row["words"], row["thumb"]

    try:
        assert listed() == (0, "/media/s/frames/000001.000.thumb.jpg")
        assert httpx.get(f"{web}/media/s/frames/000005.000.jpg").status_code == 404  # on disk, not listed
        words = [Word(1.0, 1.4, " Ever", 0.9), Word(1.4, 2.0, " tried.", 0.9)]
        TranscriptIndex([TranscriptLine(0, 1.0, 2.0, "Ever tried.", words, [0.0, 2.0], True, "en")]).write(session.root, [])
        with open(session.root / "frames.jsonl", "a") as f:
            f.write(frame_record(5.0, "frames/000005.000.jpg", "frames/000005.000.thumb.jpg", "scene"))
        assert listed() == (2, "/media/s/frames/000001.000.thumb.jpg")
        assert httpx.get(f"{web}/media/s/frames/000005.000.jpg").status_code == 200
        (session.root / INDEX).write_text(json.dumps({"version": INDEX_VERSION, "complete": True, "pending": [],
                                                       "chunks": 3, "words": 7, "lines": []}, indent=2))
        assert listed()[0] == 7
    finally:
        server.stop()


def test_a_foreign_host_or_origin_is_refused(web):
    import httpx
    import websockets.sync.client as wsc

    assert httpx.get(f"{web}/api/sessions").status_code == 200
    assert httpx.get(f"{web}/api/sessions", headers={"Host": "evil.example"}).status_code == 403  # DNS rebinding
    assert httpx.get(f"{web}/api/sessions", headers={"Host": "localhost"}).status_code == 200
    cross = httpx.post(f"{web}/api/sessions/s/capture", content="x",
                       headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert cross.status_code == 403
    same = httpx.post(f"{web}/api/sessions/s/capture", headers={"Origin": web})
    assert same.status_code == 409  # allowed through: the session is just not recording
    ws = web.replace("http", "ws") + "/ws/s"
    with pytest.raises(Exception):
        with wsc.connect(ws, origin="http://evil.example") as conn:
            conn.recv(timeout=5)
    with wsc.connect(ws, origin=web) as conn:
        assert json.loads(conn.recv(timeout=5))["type"] == "NotLive"


def test_the_relay_refuses_foreign_hosts_and_drops_trickling_requests(monkeypatch):
    import socket

    from cht.ingest import relay as relay_module

    monkeypatch.setattr(relay_module, "REQUEST_TIMEOUT_S", 1.0, raising=False)
    relay = relay_module.Relay("127.0.0.1", 0)
    relay.start()
    relay.open("s")

    def status(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
            sock.sendall(request)
            return sock.recv(64).split(b"\r\n")[0]

    try:
        assert status(b"GET /live.ts HTTP/1.1\r\nHost: evil.example\r\n\r\n") == b"HTTP/1.0 403 Forbidden"
        assert status(b"GET /live.ts HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n") \
            == b"HTTP/1.0 403 Forbidden"
        assert status(f"GET /live.ts HTTP/1.1\r\nHost: 127.0.0.1:{relay.port}\r\n\r\n".encode()) \
            == b"HTTP/1.0 200 OK"
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            started = time.monotonic()
            try:
                for byte in b"GET /live.ts HTTP/1.1\r\n":  # one byte every 0.3 s: each recv is quick
                    sock.sendall(bytes([byte]))
                    time.sleep(0.3)
            except OSError:
                pass
            assert sock.recv(64) == b"" and time.monotonic() - started < 3  # dropped at the deadline
    finally:
        relay.stop()


# -- finding 5: paths in frames.jsonl stay inside the session --

@pytest.fixture
def escaping(tmp_path, source) -> tuple[Cht, Session, Path]:
    """A session whose frames.jsonl names a file outside it, as a manual capture."""
    cht = Cht(tmp_path / "data")
    session = recorded(cht.data_dir, source)
    outside = tmp_path / "private.txt"
    outside.write_text("not the session's")
    (session.root / "frames").mkdir()
    (session.root / "frames" / "000001.000.jpg").write_bytes(b"\xff\xd8jpeg")
    (session.root / "frames.jsonl").write_text(
        frame_record(1.0, "frames/000001.000.jpg", "frames/000001.000.jpg", "scene")
        + frame_record(2.0, str(outside), str(outside))
        + frame_record(3.0, "../../../private.txt", "frames/../../../../private.txt"))
    return cht, session, outside


def test_export_never_copies_a_file_from_outside_the_session(escaping, tmp_path):
    cht, _, outside = escaping
    result = cht.run("export", "s", "-f", "md", "-o", str(tmp_path / "out" / "notes.md"))
    assert result.returncode == 0, result.stderr
    copied = sorted(p.name for p in (tmp_path / "out" / "notes_files").iterdir())
    assert copied == [".cht-export", "000001.000.jpg"]


def test_analysis_never_moves_a_file_from_outside_the_session(escaping):
    from cht.analyze.pipeline import clear_derived

    _, session, outside = escaping
    clear_derived(session.root)
    assert outside.read_text() == "not the session's"
    assert not (session.root / "frames" / "private.txt").exists()


# -- finding 6: the Markdown export never deletes a folder it did not create --

def test_export_keeps_the_users_folder_and_refuses_bad_targets(tmp_path, source):
    cht = Cht(tmp_path / "data")
    session = recorded(cht.data_dir, source)
    (session.root / "frames").mkdir()
    (session.root / "frames" / "000001.000.jpg").write_bytes(b"\xff\xd8jpeg")
    (session.root / "frames.jsonl").write_text(frame_record(1.0, "frames/000001.000.jpg", "frames/000001.000.jpg"))
    mine = tmp_path / "notes_files" / "thesis.txt"
    mine.parent.mkdir()
    mine.write_text("a year of work")
    result = cht.run("export", "s", "-f", "md", "-o", str(tmp_path / "notes.md"))
    assert result.returncode != 0 and "notes_files" in result.stderr and "Traceback" not in result.stderr
    assert mine.read_text() == "a year of work" and sorted(os.listdir(tmp_path / "notes_files")) == ["thesis.txt"]
    folder = tmp_path / "out"
    (folder / "out_files").mkdir(parents=True)
    (folder / "out_files" / "keep.txt").write_text("x")
    for target in (folder, Path("."), Path("/")):
        result = cht.run("export", "s", "-f", "md", "-o", str(target))
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (folder / "out_files" / "keep.txt").exists() and not list(folder.glob(".*tmp"))
    for _ in range(2):  # cht's own folder is replaced by the next export
        result = cht.run("export", "s", "-f", "md", "-o", str(tmp_path / "again.md"))
        assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "again_files")) == [".cht-export", "000001.000.jpg"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again")]
