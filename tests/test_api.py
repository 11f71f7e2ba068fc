"""The recordings API of a real `cht serve` (a subprocess, real sockets, real ffmpeg): start,
list, capture, stop; the token; a source the CLI refuses refused with the CLI's own words;
the OpenAPI schema; SIGTERM of the server stops what it records and leaves no process."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from conftest import Cht, descendants, make_media, still_running, wait_for
from test_clips import cli
from test_web import free_port

TOKEN = "api-test-token-0123456789"


def test_start_list_capture_stop_and_sigterm_over_http(tmp_path, capsys):
    cht = Cht(tmp_path / "data")
    src = make_media(tmp_path / "talk.mp4", 30, size="320x180", gop=15)
    port = free_port()
    cht.env["CHT_TOKEN"] = TOKEN  # as --token, but not visible to other users in `ps`
    server = cht.start("serve", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_for(lambda: _up(base), 30, what="cht serve")
        with httpx.Client(base_url=base, timeout=60) as http:
            assert http.post("/api/recordings", json={"source": str(src)}).status_code == 401
            assert http.get("/api/recordings").status_code == 401
            # Refused with the words `cht record` uses for the same input.
            for source in [str(tmp_path / "missing.mp4"), "ftp://example.org/x", str(tmp_path)]:
                code, _, said = cli(capsys, cht.data_dir, "record", source, "--no-ui")
                assert code == 2
                refused = http.post("/api/recordings", json={"source": source}, headers=auth)
                assert refused.status_code == 422, refused.text
                assert refused.json()["detail"] == said.strip().removeprefix("cht: error: ")
            bad = http.post("/api/recordings", json={"source": str(src), "options": {"max_segment": "soon"}},
                            headers=auth)
            assert bad.status_code == 422 and "not a duration" in bad.json()["detail"]
            bad = http.post("/api/recordings", json={"source": str(src), "options": {"commit_delay": -1}},
                            headers=auth)
            assert bad.status_code == 422 and "options.commit_delay is -1" in bad.json()["detail"], bad.text
            assert cht.sessions() == [], "nothing half-made is left"

            started = http.post("/api/recordings", json={"source": str(src), "session": "api",
                                                         "options": {"transcribe": False, "max_segment": "5s"}},
                                headers=auth)
            assert started.status_code == 201, started.text
            assert started.json()["state"] == "recording"
            again = http.post("/api/recordings", json={"source": str(src), "session": "api"}, headers=auth)
            assert again.status_code == 422 and "being recorded" in again.json()["detail"]
            wait_for(lambda: _row(http, auth, "api")["duration"] > 1.5, 30, what="media")
            recorders = descendants(server.pid)
            assert any("seg_%05d.mp4" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
                       for pid, _ in recorders)
            shot = wait_for(lambda: _capture(http, auth), 20, what="a capture")
            assert (cht.session_dir("api") / shot["file"]).is_file()
            stopped = http.post("/api/recordings/api/stop", headers=auth)
            assert stopped.status_code == 200 and stopped.json()["state"] == "stopped", stopped.text
            assert still_running(recorders) == []
            assert cht.manifest("api")["state"] == "stopped" and cht.manifest("api")["duration"] > 1.5
            assert http.post("/api/recordings/nosuch/stop", headers=auth).status_code == 404

            second = http.post("/api/recordings", json={"source": str(src), "session": "second",
                                                        "options": {"analyze": False}}, headers=auth)
            assert second.status_code == 201, second.text
            wait_for(lambda: _row(http, auth, "second")["duration"] > 0.5, 30, what="the second recording")
            schema = http.get("/openapi.json", headers=auth).json()
        for path in ["/api/recordings", "/api/recordings/{session_id}/stop", "/api/sessions/{session_id}/capture"]:
            assert path in schema["paths"], path
        assert set(schema["components"]["schemas"]["StartRecording"]["properties"]) == {"source", "session", "options"}
        recorders = descendants(server.pid)
    finally:
        code, _, err = Cht.stop(server, signal.SIGTERM)
    assert code == 0, err
    assert still_running(recorders) == [], "SIGTERM of cht serve must reap the recorders it started"
    assert cht.manifest("second")["state"] == "stopped", "a server stop is a clean stop, not a crash"


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/sessions", timeout=1).status_code == 401
    except httpx.HTTPError:
        return False


def _row(http: httpx.Client, auth: dict, session: str) -> dict:
    rows = http.get("/api/recordings", headers=auth).json()
    return next(r for r in rows if r["id"] == session)


def _capture(http: httpx.Client, auth: dict) -> dict | None:
    answer = http.post("/api/sessions/api/capture", headers=auth)
    return answer.json() if answer.status_code == 200 else None
