"""Every route of the web UI under generated requests (Hypothesis): paths full of `..`,
encoded dots, NULs, unicode and absolute paths, odd query values and bodies. No request may
get a 500, and none may be served a file outside the session — a canary file beside the
sessions and a symlink planted in frames/ pointing at it must never come back. Beyond
loopback every route (the websocket included) needs the token."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from cht.web.app import UiState, create_app
from conftest import Cht, make_media

CANARY = "canary-7f3a9: this file lies outside every session"
TRAVERSALS = ["..", "../..", "%2e%2e", "%2e%2e%2f%2e%2e", "..%2f..%2fsecret.txt", "/etc/passwd", "%2fetc%2fpasswd",
              "....//....//secret.txt", "..\\..\\secret.txt", "\0", "%00", "escape.jpg", "secret.txt",
              "../../secret.txt", "frames/../../secret.txt", "~", ".", "", " ", "seg_00000.mp4/../../../secret.txt"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    cht = Cht(tmp / "data")
    src = make_media(tmp / "talk.mp4", 4)
    assert cht.run("record", "--fast", "--no-ui", "--no-transcribe", "--session", "talk", str(src)).returncode == 0
    (cht.data_dir / "secret.txt").write_text(CANARY)
    os.symlink(cht.data_dir / "secret.txt", cht.session_dir("talk") / "frames" / "escape.jpg")
    files = [p.name for p in (cht.session_dir("talk") / "frames").iterdir()] + ["seg_00000.mp4"]
    return cht.data_dir, files


def segment_text():
    return st.one_of(st.sampled_from(TRAVERSALS), st.text(max_size=40),
                     st.text(alphabet=st.sampled_from("./%2e\\~"), max_size=12))


def check(response) -> None:
    assert response.status_code < 500, (response.request.url, response.status_code, response.text[:200])
    assert CANARY.encode() not in response.content, response.request.url


def path_of(*segments: str, raw: bool) -> str:
    """Each segment percent-encoded, or `raw`: dots, slashes and escapes left as typed."""
    return "/" + "/".join(quote(s, safe="/.%~\\" if raw else "") for s in segments)


ROUTES = [
    lambda sid, name: ("GET", path_of("session", sid, raw=False)),
    lambda sid, name: ("GET", path_of("api", "sessions", sid, raw=False)),
    lambda sid, name: ("GET", path_of("media", sid, "segments", name, raw=False)),
    lambda sid, name: ("GET", path_of("media", sid, "frames", name, raw=False)),
    lambda sid, name: ("GET", path_of("media", sid, "frames", name, raw=True)),
    lambda sid, name: ("GET", path_of("media", sid, "segments", name, raw=True)),
    lambda sid, name: ("POST", path_of("api", "sessions", sid, "capture", raw=False)),
    lambda sid, name: ("GET", path_of("api", "sessions", sid, "peaks", raw=False) + f"?spp={quote(name)}&start=0"),
    lambda sid, name: ("GET", "/api/search?q=" + quote(name) + "&session=" + quote(sid)),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(range(len(ROUTES))), sid=st.one_of(st.just("talk"), segment_text()),
       name=st.one_of(st.sampled_from(["seg_00000.mp4", "escape.jpg"]), segment_text()),
       query=st.dictionaries(st.sampled_from(["spp", "start", "end", "q", "limit", "session", "t"]),
                             st.one_of(st.integers(-2**70, 2**70).map(str), st.text(max_size=20)), max_size=4))
def test_generated_requests_never_fail_or_leak(site, route, sid, name, query):
    data_dir, _ = site
    client = TestClient(create_app(UiState(data_dir)))
    method, url = ROUTES[route](sid, name)
    if query:
        url += ("&" if "?" in url else "?") + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    try:
        response = client.request(method, url)
    except UnicodeEncodeError:  # a surrogate no client can send
        return
    check(response)


def test_every_route_needs_the_token_beyond_loopback(site):
    data_dir, files = site
    client = TestClient(create_app(UiState(data_dir), token="t0ken"))
    urls = ["/", "/session/talk", "/api/sessions", "/api/sessions/talk", "/api/sessions/talk/peaks",
            "/api/search?q=x", "/media/talk/segments/seg_00000.mp4", f"/media/talk/frames/{files[0]}"]
    for url in urls:
        assert client.get(url).status_code == 401, url
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
        assert client.get(url + ("&" if "?" in url else "?") + "token=t0ken").status_code < 400, url
        client.cookies.clear()  # the token's cookie would let the next request in
    assert client.post("/api/sessions/talk/capture").status_code == 401
    with pytest.raises(WebSocketDisconnect):
        with TestClient(create_app(UiState(data_dir), token="t0ken")).websocket_connect("/ws/talk") as ws:
            ws.receive_text()
