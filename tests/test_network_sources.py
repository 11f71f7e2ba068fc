"""Pulled and pushed sources over real sockets: an HTTP URL served here, and a TCP
listener that a real ffmpeg client pushes MPEG-TS to, twice, with an outage between."""

from __future__ import annotations

import functools
import json
import http.server
import signal
import socket
import subprocess
import threading
import time

import pytest

from cht.media import fmp4
from cht.media.ffmpeg import ffmpeg_exe
from conftest import Cht, decode_fully, listening, make_media, part, send_paced, wait_for

pytestmark = pytest.mark.slow


def recorded(segment) -> float:
    """Seconds of media in the segment's complete fragments so far."""
    return fmp4.scan(segment).duration if segment.exists() else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_url_records_to_the_end_of_the_stream(cht: Cht, tmp_path):
    make_media(tmp_path / "talk.ts", 5)  # MPEG-TS: streamable over plain HTTP without range requests
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = cht.run("record", "--session", "web", f"http://127.0.0.1:{server.server_port}/talk.ts")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    manifest = cht.manifest("web")
    assert manifest["state"] == "stopped" and manifest["reason"] == "end of source"
    assert manifest["duration"] == pytest.approx(5.0, abs=0.1)
    decode_fully(cht.session_dir("web") / manifest["segments"][0]["file"])


def test_tcp_listener_reconnect_is_a_gap_of_the_outage(cht: Cht, tmp_path):
    first = part(tmp_path / "a.ts", 4, "640x360", 48000)
    second = part(tmp_path / "b.ts", 3, "640x360", 48000, offset=4.0)
    port = free_port()
    proc = cht.start("record", "--session", "push", f"tcp://127.0.0.1:{port}")
    wait_for(lambda: listening(port) or proc.poll() is not None, 30, what="the listener")  # after the model loads
    assert proc.poll() is None
    with socket.create_connection(("127.0.0.1", port)) as sock:  # a client written here: its times are known
        send_paced(sock, first, 4)
    outage_start = time.monotonic()
    wait_for(lambda: (cht.session_dir("push") / "manifest.json").exists(), 5, what="manifest")
    wait_for(lambda: listening(port), 10, 0.02, what="the next listener")
    time.sleep(max(0.0, outage_start + 3.0 - time.monotonic()))
    outage = time.monotonic() - outage_start
    with socket.create_connection(("127.0.0.1", port)) as sock:
        send_paced(sock, second, 3)
    wait_for(lambda: recorded(cht.session_dir("push") / "segments" / "seg_00001.mp4") >= 2.9, 15,
             what="the second client's media in its segment")
    code, out, err = Cht.stop(proc, signal.SIGINT)
    assert code == 0, err
    manifest = cht.manifest("push")
    segs = manifest["segments"]
    assert len(segs) == 2 and segs[0]["run"] != segs[1]["run"]
    # a clean disconnect loses nothing: all of what was sent is recorded, to a frame or so
    assert segs[0]["duration"] == pytest.approx(4.0, abs=0.1)
    (gap,) = manifest["gaps"]
    # The time the listener waited for its next client is on the clock as a gap. Each client's
    # first media is dated by when its fragments land (ffmpeg probes ~5 s, then writes at once)
    assert gap["end"] - gap["start"] == pytest.approx(outage, abs=0.35), (gap, outage)
    for seg in segs:
        decode_fully(cht.session_dir("push") / seg["file"])
    # The wall-clock placing of live runs survives a rebuild from the files alone.
    (cht.session_dir("push") / "manifest.json").unlink()
    assert cht.run("rebuild", "push").returncode == 0
    rebuilt = cht.manifest("push")
    assert (rebuilt["segments"], rebuilt["gaps"]) == (manifest["segments"], manifest["gaps"])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["rtmp", "srt"])
def test_pushed_rtmp_and_srt_streams_are_recorded(cht: Cht, tmp_path, protocol):
    src = make_media(tmp_path / "obs.mp4", 8)
    if protocol == "rtmp":
        url, muxer = f"rtmp://127.0.0.1:{free_port()}/live/s3cret-key", "flv"
    else:
        url, muxer = f"srt://127.0.0.1:{free_udp_port()}", "mpegts"
    proc = cht.start("record", "--no-analyze", "--session", protocol, url)
    port = int(url.split(":")[2].split("/")[0])
    wait_for(lambda: listening(port, udp=protocol == "srt") or proc.poll() is not None, 30, 0.05, what="the listener")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-i", str(src), "-t", "4",
                    "-c", "copy", "-f", muxer, url], check=True, timeout=30)
    wait_for(lambda: recorded(cht.session_dir(protocol) / "segments" / "seg_00000.mp4") >= 3.5, 15,
             what="what was pushed, recorded")
    code, out, err = Cht.stop(proc, signal.SIGINT)
    assert code == 0, err
    manifest = cht.manifest(protocol)
    assert len(manifest["segments"]) == 1 and manifest["duration"] >= 2.5
    assert "s3cret" not in json.dumps(manifest) and "s3cret" not in out + err
    decode_fully(cht.session_dir(protocol) / manifest["segments"][0]["file"])


def test_hls_playlist_is_pulled_to_its_end(cht: Cht, tmp_path):
    """README: http(s) URLs include HLS playlists: 1 s segments served over plain HTTP."""
    hls = tmp_path / "hls"
    hls.mkdir()
    src = make_media(tmp_path / "talk.mp4", 6)
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(src), "-c", "copy", "-f", "hls",
                    "-hls_time", "1", "-hls_playlist_type", "vod", str(hls / "index.m3u8")], check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(hls))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = cht.run("record", "--no-analyze", "--session", "hls",
                         f"http://127.0.0.1:{server.server_port}/index.m3u8")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    manifest = cht.manifest("hls")
    assert manifest["state"] == "stopped" and manifest["reason"] == "end of source"
    assert manifest["duration"] == pytest.approx(6.0, abs=0.1) and not manifest["gaps"]
    counts = decode_fully(cht.session_dir("hls") / manifest["segments"][0]["file"])
    assert counts["video"] == pytest.approx(6 * 30, abs=2) and counts["audio"] > 0


def test_udp_stream_is_pulled(cht: Cht, tmp_path):
    """README: udp:// is a stream ffmpeg pulls (it binds the port; a sender pushes MPEG-TS)."""
    src = make_media(tmp_path / "cam.mp4", 4)
    port = free_udp_port()
    proc = cht.start("record", "--no-analyze", "--session", "udp", f"udp://127.0.0.1:{port}")
    try:
        wait_for(lambda: listening(port, udp=True) or proc.poll() is not None, 30, 0.05, what="the UDP receiver")
        assert proc.poll() is None
        sender = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                                   "-i", str(src), "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"])
        try:
            wait_for(lambda: recorded(cht.session_dir("udp") / "segments" / "seg_00000.mp4") >= 3.0, 30,
                     what="what was sent, recorded")
        finally:
            sender.kill()
            sender.wait()
    finally:
        code, out, err = Cht.stop(proc, signal.SIGINT)
    assert code == 0, (out, err)
    manifest = cht.manifest("udp")
    assert manifest["state"] == "stopped" and manifest["duration"] >= 3.0
    decode_fully(cht.session_dir("udp") / manifest["segments"][0]["file"])
