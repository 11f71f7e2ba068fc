"""The web timeline in a real browser (Debian's chromium driven by Playwright) against a
real recording with real speech, and the HTTP-level security checks."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from cht import events as ev
from cht.index.live import follow
from cht.index.search import SearchIndex
from cht.session import Session
from cht.web.app import LiveSession, UiState
from cht.web.server import WebServer
from conftest import Cht, make_media, wait_for
from speech import live_recording, make_speech_video

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium (scripts/test does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(page, script: str, timeout: float, what: str):
    return wait_for(lambda: page.evaluate(script), timeout, 0.1, what=what)


def test_live_page_grows_seeks_across_segments_and_catches_up_after_a_server_restart(browser, tmp_path):
    src = tmp_path / "talk.mp4"
    make_speech_video(src, [1.0, 13.0], 26.0)
    data = tmp_path / "data"
    session = Session.create(data, "web")
    bus = ev.EventBus()
    published: list[ev.Event] = []
    bus.subscribe(published.append)
    index = SearchIndex(data)
    life = live_recording(session, str(src), bus, tmp_path / "cache")
    bus.subscribe(follow(index, "web", lambda: life.manifest.started_at, "talk.mp4"))
    state = UiState(data, live={"web": LiveSession(bus, life.capture, lambda: life.manifest, life.status)})
    web = WebServer(state, host="127.0.0.1", port=free_port(), fixed_port=True)
    life.start()
    web.start()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(web.url("web"))
        poll(page, "window.cht && window.cht.ready", 15, "the page")
        # Thumbnails, waveform and transcript appear without a reload; the duration ticks.
        poll(page, "document.querySelectorAll('#thumbs img').length >= 1", 15, "a thumbnail")
        first = page.inner_text("#duration")
        time.sleep(2.2)
        assert page.inner_text("#duration") != first, "the duration must tick"
        waveform_drawn = """(() => { const c = document.getElementById('wave');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 200 && d[i] < 120) return true; return false; })()"""
        poll(page, waveform_drawn, 15, "the waveform")
        poll(page, "document.querySelectorAll('#transcript .line').length >= 1", 20, "transcript text")

        # A forced recorder restart: the second phrase lands in a second segment.
        wait_for(lambda: life.manifest.duration >= 8.0, 20, what="8 s recorded")
        os.kill(life.lifecycle.recorder_pid, signal.SIGKILL)
        wait_for(lambda: len(life.manifest.segments) == 2, 10, what="the second segment")

        # The websocket server goes away mid-run and comes back: the page catches up, once.
        web.stop()
        down_from = bus.last_seq
        time.sleep(4)
        down_to = bus.last_seq
        assert down_to > down_from, "events must happen while the server is down"
        web.start()
        poll(page, f"window.cht.lastSeq >= {down_to}", 15, "the page to catch up")
        seqs = page.evaluate("window.cht.seqs")
        assert len(seqs) == len(set(seqs)), "an event was applied twice"
        assert set(range(down_from + 1, down_to + 1)) <= set(seqs), "events missed while down were not replayed"

        poll(page, "[...document.querySelectorAll('#transcript .line')].some(r => Number(r.dataset.start) > 13)",
             40, "a line of the second phrase")
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "live.png"))

        # LIVE follows the live edge, a few seconds behind at most.
        page.keyboard.press("l")
        poll(page, f"!document.getElementById('video').paused && "
                   f"window.cht.globalTime() > {life.manifest.duration} - 6", 15, "the player at the live edge")

        # Clicking a line seeks the programme to it, also in the second segment.
        second_start = life.manifest.segments[1].global_start
        rows = page.query_selector_all("#transcript .line")
        targets = [rows[0], next(r for r in rows if float(r.get_attribute("data-start")) > second_start + 1)]
        for row in targets:
            start = float(row.get_attribute("data-start"))
            row.click()
            poll(page, f"Math.abs(window.cht.globalTime() - {start}) <= 0.5 && "
                       "document.getElementById('video').readyState >= 1", 10, f"a seek to {start}")
        assert page.evaluate("window.cht.state.seg") == 1
    finally:
        life.stop()
        web.stop()
    # The finished session, served from its files alone.
    finished = WebServer(UiState(data), host="127.0.0.1", port=free_port(), fixed_port=True)
    finished.start()
    try:
        page.goto(finished.url("web"))
        poll(page, "window.cht && window.cht.ready", 15, "the finished page")
        assert page.text_content("#state") == "stopped"
        assert len(page.query_selector_all("#transcript .line")) >= 4
        page.screenshot(path=str(SHOTS / "finished.png"))
        page.set_viewport_size({"width": 800, "height": 800})
        page.screenshot(path=str(SHOTS / "finished-800.png"))
        assert page.evaluate("document.documentElement.scrollWidth") <= 800, "usable at 800 px: no sideways scroll"
        page.goto(finished.url())
        poll(page, "document.querySelectorAll('#rows tr').length == 1", 10, "the sessions page")
    finally:
        page.close()
        finished.stop()


@pytest.fixture
def served(tmp_path):
    """A finished session with a planted symlink out of the session dir, served with a token."""
    cht = Cht(tmp_path / "data")
    src = make_media(tmp_path / "src.mp4", 3)
    assert cht.run("record", str(src), "--session", "s", "--fast", "--no-ui").returncode == 0
    frames = cht.session_dir("s") / "frames"
    (frames / "000009.000.jpg").symlink_to("/etc/passwd")
    with open(cht.session_dir("s") / "frames.jsonl", "a") as f:
        f.write('{"t": 9.0, "file": "frames/000009.000.jpg", "thumb": "frames/000009.000.jpg", '
                '"score": 1.0, "kind": "manual"}\n')
    web = WebServer(UiState(cht.data_dir), host="0.0.0.0", port=free_port(), fixed_port=True)
    web.start()
    yield f"http://127.0.0.1:{web.port}", web.token
    web.stop()


def test_no_path_from_a_request_leaves_the_session_and_the_token_is_required(served):
    base, token = served
    assert token, "bound beyond loopback: a token is generated"
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base) as client:
        assert client.get("/api/sessions").status_code == 401
        assert client.get("/media/s/segments/seg_00000.mp4").status_code == 401
        assert client.get("/api/sessions", params={"token": "wrong"}).status_code == 401
        ok = client.get("/api/sessions", params={"token": token})
        cookie = ok.headers.get("set-cookie", "")
        assert ok.status_code == 200 and cookie.startswith(f"cht_token={token};"), cookie
        # the cookie is out of the page's scripts' reach and not sent by other sites' requests
        assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {f.strip() for f in cookie.split(";")}, cookie
        client.cookies.set("cht_token", token)
        assert client.get("/api/sessions").status_code == 200, "the cookie alone lets the page in"
        client.cookies.clear()
        assert client.get("/media/s/segments/seg_00000.mp4", headers=auth).status_code == 200
        for path in ["/media/s/segments/..%2F..%2Fmanifest.json", "/media/s/segments/%2e%2e%2fmanifest.json",
                     "/media/s/segments/%2Fetc%2Fpasswd", "/media/s/frames/..%2f..%2f..%2fetc%2fpasswd",
                     "/media/s/frames/000009.000.jpg", "/media/%2e%2e/segments/seg_00000.mp4",
                     "/media/../s/segments/seg_00000.mp4", "/api/sessions/..%2F..", "/media/s/segments/seg_00000.mp4x",
                     "/session/%2e%2e", "/api/sessions/s/peaks?spp=7", "/media/s/frames/manifest.json"]:
            response = client.get(path, headers=auth)
            assert response.status_code in (404, 422), (path, response.status_code)
            assert "root:" not in response.text
    import websockets.sync.client as wsc
    from websockets.exceptions import InvalidStatus

    ws_url = base.replace("http", "ws") + "/ws/s"
    for refused in (ws_url, ws_url + "?token=wrong"):
        with pytest.raises(InvalidStatus) as caught:  # the handshake itself is refused
            with wsc.connect(refused) as ws:
                ws.recv(timeout=5)
        assert caught.value.response.status_code == 403, refused
    with wsc.connect(ws_url + f"?token={token}") as ws:  # the same socket with the token is served
        assert json.loads(ws.recv(timeout=5)) == {"type": "NotLive"}


def test_cht_open_serves_one_session_read_only(tmp_path):
    import subprocess

    from conftest import CHT

    cht = Cht(tmp_path / "data")
    src = make_media(tmp_path / "src.mp4", 2)
    for name in ("one", "two"):
        assert cht.run("record", str(src), "--session", name, "--fast", "--no-ui", "--no-transcribe").returncode == 0
    port = free_port()
    proc = subprocess.Popen([*CHT, "open", "one", "--port", str(port)], env=cht.env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}/session/one" in line, line
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(base + "/api/sessions") is not None, 10, what="the server")
        assert [s["id"] for s in _get(base + "/api/sessions").json()] == ["one"]
        assert _get(base + "/api/sessions/two").status_code == 404
        assert httpx.post(base + "/api/sessions/one/capture").status_code == 409
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0


def _get(url: str):
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def test_serve_follows_a_recording_of_another_process_and_searches_every_session(browser, tmp_path):
    cht = Cht(tmp_path / "data")
    src = tmp_path / "talk.mp4"
    make_speech_video(src, [1.0], 16.0)
    proc = cht.start("record", str(src), "--session", "elsewhere", "--language", "en", "--no-ui")
    web = WebServer(UiState(cht.data_dir), host="127.0.0.1", port=free_port(), fixed_port=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        wait_for(lambda: (cht.session_dir("elsewhere") / "manifest.json").exists(), 20, what="the recording")
        web.start()
        page.goto(web.url("elsewhere"))
        poll(page, "window.cht && window.cht.ready", 15, "the page")
        assert page.text_content("#state") == "recording"
        first = page.inner_text("#duration")
        poll(page, f"document.getElementById('duration').textContent != '{first}'", 15, "the duration to grow")
        poll(page, "document.querySelectorAll('#transcript .line').length >= 2", 30, "transcript from the files")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        poll(page, "document.getElementById('state').textContent == 'stopped'", 15, "the stop")
        # The sessions page searches every session; a hit opens that moment.
        page.goto(web.url())
        poll(page, "document.querySelectorAll('#rows tr').length == 1", 10, "the sessions page")
        # A phrase Whisper base always hears in beckett.wav: its last words came out as "Failed
        # better" in 1 of 3 runs here (and once in a full suite), and "fail better" found nothing.
        page.fill("#q", '"try again"')
        page.press("#q", "Enter")
        page.wait_for_selector("#hits div mark", timeout=10_000)
        page.click("#hits div")
        poll(page, "location.pathname == '/session/elsewhere' && window.cht && window.cht.ready", 10, "the hit")
        poll(page, "Math.abs(window.cht.globalTime() - Number(new URLSearchParams(location.search).get('t'))) < 0.5",
             10, "the seek to the hit")
    finally:
        if proc.poll() is None:
            Cht.stop(proc)
        page.close()
        web.stop()


def test_drafts_dimmed_keys_and_a_resync_after_the_replay_buffer(browser, tmp_path):
    """A live session driven by a bus the test controls: a draft line is shown dimmed and
    replaced by its final text (a late draft never replaces it); space plays and pauses,
    ←/→ move 5 s; a page that comes back after more events than the replay buffer holds is
    told to `Resync` and reloads the session over HTTP instead of replaying."""
    from cht.transcribe.store import TranscriptLine

    cht = Cht(tmp_path / "data")
    src = make_media(tmp_path / "src.mp4", 20)
    assert cht.run("record", str(src), "--session", "s", "--fast", "--no-ui", "--no-transcribe").returncode == 0
    bus = ev.EventBus(history=5)
    web = WebServer(UiState(cht.data_dir, live={"s": LiveSession(bus)}), host="127.0.0.1", port=free_port(),
                    fixed_port=True)
    web.start()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    loads: list[float] = []
    page.on("request", lambda r: loads.append(time.monotonic()) if r.url.endswith("/api/sessions/s") else None)
    try:
        page.goto(web.url("s"))
        poll(page, "window.cht && window.cht.ready", 15, "the page")
        bus.publish(ev.TranscriptSegments([TranscriptLine(7, 2.0, 3.0, "a final line")], final=True))
        bus.publish(ev.TranscriptSegments([TranscriptLine(8, 4.0, 5.0, "still being spoken", final=False)],
                                          final=False))
        row = "document.querySelector('#transcript .line[data-chunk=\"8\"]')"
        poll(page, row, 10, "the draft line")
        style = "(q => { const s = getComputedStyle(document.querySelector(q)); return [s.color, s.fontStyle]; })"
        final_color, final_font = page.evaluate(f"{style}('#transcript .line[data-chunk=\"7\"] span')")
        draft_color, draft_font = page.evaluate(f"{style}('#transcript .line[data-chunk=\"8\"] span')")
        assert page.evaluate(f"{row}.classList.contains('draft')")
        assert draft_color != final_color and (draft_font, final_font) == ("italic", "normal"), (draft_color, final_color)
        bus.publish(ev.TranscriptSegments([TranscriptLine(8, 4.0, 5.2, "still being spoken now")], final=True))
        poll(page, f"!{row}.classList.contains('draft')", 10, "the final text in place of the draft")
        bus.publish(ev.TranscriptSegments([TranscriptLine(8, 4.0, 5.0, "late draft", final=False)], final=False))
        poll(page, f"window.cht.lastSeq == {bus.last_seq}", 10, "the late draft to arrive")
        assert page.inner_text('#transcript .line[data-chunk="8"] span') == "still being spoken now"

        # keys: space plays and pauses, arrows move 5 s on the global clock
        page.click("#duration")  # focus the page, not the search box
        page.evaluate("window.cht.seek(10, true)")
        poll(page, "Math.abs(window.cht.globalTime() - 10) < 0.1", 10, "the seek to 10 s")
        paused = page.evaluate("document.getElementById('video').paused")
        page.keyboard.press("Space")
        poll(page, f"document.getElementById('video').paused == {str(not paused).lower()}", 5, "space to toggle")
        page.keyboard.press("Space")
        poll(page, f"document.getElementById('video').paused == {str(paused).lower()}", 5, "space to toggle back")
        at = page.evaluate("window.cht.globalTime()")
        page.keyboard.press("ArrowRight")
        poll(page, f"Math.abs(window.cht.globalTime() - {at + 5}) < 0.5", 5, "→ to move 5 s on")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        poll(page, f"Math.abs(window.cht.globalTime() - {at - 5}) < 0.5", 5, "← ← to move 10 s back")

        # away while more events than the buffer holds: Resync, then a reload over HTTP
        web.stop()
        seen = bus.last_seq
        for k in range(12):
            bus.publish(ev.LiveTick(20.0 + k))
        reloads_before = len(loads)
        web.start()
        poll(page, f"window.cht.lastSeq == {bus.last_seq}", 15, "the page to resync")
        wait_for(lambda: len(loads) > reloads_before, 5, what="the session reloaded over HTTP")
        assert not set(page.evaluate("window.cht.seqs")) & set(range(seen + 1, bus.last_seq + 1)), \
            "events older than the replay buffer cannot be replayed one by one"
    finally:
        page.close()
        web.stop()
