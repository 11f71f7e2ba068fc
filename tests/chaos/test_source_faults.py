"""Source faults on a pushed stream (the real `cht ingest`, a client written here so it can
misbehave): it stalls for 10 s, switches resolution and audio sample rate mid-stream,
disconnects and comes back, then sends 30 s without a keyframe. The service never falls
over; every segment decodes to its end; what was sent is recorded; the disconnect is a gap."""

from __future__ import annotations

import socket
import time

import pytest

from conftest import Cht, decode_fully, part, send_paced, wait_for

pytestmark = pytest.mark.slow


def test_stall_format_changes_disconnect_and_no_keyframe_for_30s(cht: Cht, tmp_path):
    small = part(tmp_path / "a.ts", 6, "640x360", 48000)
    large = part(tmp_path / "b.ts", 6, "1280x720", 44100, offset=6.0)
    no_key = part(tmp_path / "c.ts", 30, "640x360", 48000, gop=100000)
    port = _free_port()
    ingest = cht.start("ingest", "--listen", f"tcp://127.0.0.1:{port}", "--grace", "20s", "--no-relay")
    from cht.watch import service_answers

    wait_for(lambda: service_answers(cht.data_dir), 20, what="the ingest service")
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            send_paced(sock, small, 6)
            time.sleep(10.0)  # the source stalls
            assert service_answers(cht.data_dir)["clients"] == 1  # a stall is not a disconnect
            send_paced(sock, large, 6)  # 1280x720 and 44.1 kHz from here on
        time.sleep(3.0)  # the source is gone for 3 s
        with socket.create_connection(("127.0.0.1", port)) as sock:
            send_paced(sock, no_key, 30)
        wait_for(lambda: service_answers(cht.data_dir)["state"] == "waiting", 10, what="the client to be gone")
        assert ingest.poll() is None
    finally:
        code, _, err = Cht.stop(ingest)
    assert code == 0, err
    (session,) = cht.sessions()
    manifest = cht.manifest(session)
    assert manifest["state"] == "stopped", manifest
    first, second = manifest["segments"]
    # what was sent is recorded, to within a frame or two: a clean disconnect loses nothing
    # (measured: 12.000 and 30.037 s)
    assert first["duration"] == pytest.approx(12.0, abs=0.1)  # both formats, the stall not in the media
    assert second["duration"] == pytest.approx(30.0, abs=0.1)  # fragments every second, keyframes or not
    (gap,) = manifest["gaps"]
    assert gap["end"] - gap["start"] >= 3.0  # the stall and the disconnect: wall time with no media
    for seg in manifest["segments"]:
        counts = decode_fully(cht.session_dir(session) / seg["file"])
        assert counts["video"] >= 25 * seg["duration"] and counts["audio"] > 0, (seg, counts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
