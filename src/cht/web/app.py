"""The web UI's ASGI app: pages, a JSON API, media with Range support, and one websocket
per page carrying a live session's events (with catch-up by sequence number)."""

from __future__ import annotations

import asyncio
import html
import json
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs

from fastapi import Body, FastAPI, HTTPException, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from cht import events as ev
from cht.analyze.audio import LEVELS, level_name, read_dat_range
from cht.analyze.scenes import read_frames
from cht.errors import SessionError
from cht.index.search import MARK_END, MARK_START, SearchIndex
from cht.ocr.text import chapters, read_ocr
from cht.session import Manifest, list_sessions
from cht.speakers import store as speaker_store
from cht.transcribe.store import read_spoken
from cht.web.guard import frame_path, segment_path, session_or_404, token_ok
from cht.web.summaries import first_thumb, word_count

STATIC = Path(__file__).parent / "static"
MAX_PEAKS = 20_000  # pixels one request may ask for
QUEUE_EVENTS = 20_000  # events a slow page may fall behind before it is made to resync


@dataclass
class LiveSession:
    """A session this process is recording: its bus and what the page may ask of it."""

    bus: ev.EventBus
    capture: Callable[[], dict] | None = None
    manifest: Callable[[], Manifest] | None = None  # the live one: fresher than manifest.json
    status: Callable[[], dict] | None = None  # the recording's status (transcript lag among it)


@dataclass
class UiState:
    data_dir: Path
    only: str | None = None  # `cht open ID`: this session and nothing else
    live: dict[str, LiveSession] = field(default_factory=dict)
    records: bool = False  # `cht serve`: POST /api/recordings may start recordings in this process
    _index: SearchIndex | None = None
    _recordings: object | None = None

    @property
    def recordings(self):
        """The recordings started over HTTP (cht.web.api.Recordings)."""
        if self._recordings is None:
            from cht.web.api import Recordings

            self._recordings = Recordings(self.data_dir, self.live, lambda: self.index,
                                          enabled=self.records and self.only is None)
        return self._recordings

    @property
    def index(self) -> SearchIndex:
        """One search index for every request (it serialises its own use)."""
        if self._index is None:
            self._index = SearchIndex(self.data_dir)
        return self._index


def create_app(state: UiState, token: str | None = None) -> FastAPI:
    app = FastAPI(title="cht", docs_url=None, redoc_url=None,
                  description="The web timeline's JSON API. Every route needs the token the server printed when "
                              "it is bound beyond loopback (`?token=`, the cookie set from it, or "
                              "`Authorization: Bearer`); `/openapi.json` is this schema.")
    app.state.ui = state

    def session(session_id: str):
        return session_or_404(state.data_dir, session_id, state.only)

    @app.get("/", include_in_schema=False)
    def sessions_page() -> FileResponse:
        return FileResponse(STATIC / "sessions.html")

    @app.get("/session/{session_id}", include_in_schema=False)
    def session_page(session_id: str) -> FileResponse:
        session(session_id)
        return FileResponse(STATIC / "session.html")

    @app.get("/api/sessions")
    def api_sessions() -> list[dict]:
        rows = []
        for sess, manifest in list_sessions(state.data_dir):
            if state.only and sess.id != state.only:
                continue
            if manifest is None:  # unreadable or the wrong shape: listed, so it can be repaired
                rows.append({"id": sess.id, "source": "", "state": "damaged (cht rebuild)", "started_at": "",
                             "duration": 0.0, "live": False, "words": 0, "transcript_lag": None, "thumb": None})
                continue
            live = state.live.get(sess.id)
            if live is not None and live.manifest is not None:
                manifest = live.manifest()
            thumb = first_thumb(sess.root)
            lag = (live.status() if live is not None and live.status is not None else {}).get("transcript_lag")
            rows.append({
                "id": sess.id, "source": manifest.source, "state": manifest.state,
                "started_at": manifest.started_at, "duration": manifest.duration,
                "live": sess.id in state.live, "words": word_count(sess.root), "transcript_lag": lag,
                "thumb": f"/media/{sess.id}/frames/{thumb}" if thumb else None,
            })
        return rows

    @app.get("/api/sessions/{session_id}")
    def api_session(session_id: str) -> dict:
        sess = session(session_id)
        live = state.live.get(session_id)
        # The event number first, the files after: every event up to it is in them (each stage
        # writes before it publishes), so the page's replay from it misses nothing.
        seq = live.bus.last_seq if live else 0
        manifest = live.manifest() if live and live.manifest else sess.current_manifest()
        slides = read_ocr(sess.root)
        text = {s.file: s.text for s in slides}
        return {
            "manifest": manifest.to_dict(),
            "live": live is not None,
            "seq": seq,
            "frames": [{"t": f.t, "kind": f.kind, "url": f"/media/{session_id}/frames/{Path(f.file).name}",
                        "thumb": f"/media/{session_id}/frames/{Path(f.thumb).name}", "text": text.get(f.file, "")}
                       for f in read_frames(sess.root)],
            "chapters": [{"start": c.start, "end": c.end, "title": c.title}
                         for c in chapters(slides, manifest.duration)],
            "transcript": [{"chunk": line.chunk, "start": line.start, "end": line.end, "text": line.text,
                            "words": [{"start": w.start, "end": w.end, "word": w.word} for w in line.words],
                            "final": True} for line in read_spoken(sess.root)],
            "speakers": speaker_store.read(sess.root).to_dict(),
            "levels": [spp for spp in LEVELS if (sess.root / "audio" / f"{level_name(spp)}.dat").exists()],
        }

    @app.get("/api/sessions/{session_id}/peaks")
    def api_peaks(session_id: str, spp: int = Query(LEVELS[0]), start: int = Query(0, ge=0),
                  end: int = Query(MAX_PEAKS, ge=0)) -> dict:
        sess = session(session_id)
        if spp not in LEVELS:
            raise HTTPException(404, "no such zoom level")
        path = sess.root / "audio" / f"{level_name(spp)}.dat"
        if not path.is_file():
            return {"spp": spp, "length": 0, "start": start, "data": []}
        _, length, data = read_dat_range(path, start, min(end, start + MAX_PEAKS))
        return {"spp": spp, "length": length, "start": start, "data": data}

    @app.get("/api/search")
    def api_search(q: str = Query("", max_length=500), session_id: str | None = Query(None, alias="session"),
                   limit: int = Query(50, ge=1, le=500)) -> list[dict]:
        if session_id is not None:
            session(session_id)
        elif state.only:
            session_id = state.only
        hits = state.index.search(q, session=session_id, limit=limit)
        return [{"session": h.session, "t": h.t, "text": h.text, "kind": h.kind, "speaker": h.speaker,
                 "url": f"/session/{h.session}?t={h.t:.2f}",
                 "snippet": html.escape(h.snippet).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")}
                for h in hits]

    @app.get("/api/sessions/{session_id}/speakers")
    def api_speakers(session_id: str) -> dict:
        """Polled by a live page: labels are refined as the session grows and at its end."""
        return speaker_store.read(session(session_id).root).to_dict()

    @app.post("/api/sessions/{session_id}/speakers/{label}")
    def api_rename_speaker(session_id: str, label: str, body: dict = Body(...)) -> dict:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise HTTPException(422, 'send {"name": "…"}')
        try:
            return speaker_store.rename(session(session_id).root, label, name).to_dict()
        except SessionError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/api/sessions/{session_id}/capture")
    def api_capture(session_id: str) -> dict:
        session(session_id)
        live = state.live.get(session_id)
        if live is None or live.capture is None:
            raise HTTPException(409, "this session is not recording")
        try:
            return live.capture()
        except RuntimeError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/api/sessions/{session_id}/clip", response_class=FileResponse,
             responses={200: {"content": {"video/mp4": {}}, "description": "the clip, transcript as subtitles"}})
    def api_clip(session_id: str, start: float = Query(..., alias="from", ge=0), end: float = Query(..., alias="to"),
                 exact: bool = Query(False)) -> FileResponse:
        """FROM–TO of the global clock as one MP4 (see `cht clip`)."""
        from cht.web.clip import clip_response

        return clip_response(session(session_id), start, end, exact)

    @app.get("/media/{session_id}/segments/{name}", include_in_schema=False)
    def media_segment(session_id: str, name: str) -> FileResponse:
        return FileResponse(segment_path(session(session_id), name), media_type="video/mp4")

    @app.get("/media/{session_id}/frames/{name}", include_in_schema=False)
    def media_frame(session_id: str, name: str) -> FileResponse:
        return FileResponse(frame_path(session(session_id), name), media_type="image/jpeg",
                            headers={"Cache-Control": "max-age=86400"})

    @app.websocket("/ws/{session_id}")
    async def events(ws: WebSocket, session_id: str, since: int = 0) -> None:
        await ws.accept()
        live = state.live.get(session_id)
        if live is None or (state.only and session_id != state.only):
            await ws.send_json({"type": "NotLive"})
            await ws.close()
            return
        await _stream(ws, live.bus, since)

    from cht.web.api import router as recordings_router

    app.include_router(recordings_router(state.recordings))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return TokenGate(app, token) if token else app


async def _stream(ws: WebSocket, bus: ev.EventBus, since: int) -> None:
    """Replay what the page missed, then follow. A page too slow to keep up is told to resync."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[ev.Event | None] = asyncio.Queue()

    def put(event: ev.Event) -> None:
        if queue.qsize() < QUEUE_EVENTS:
            queue.put_nowait(event)
        else:
            queue.put_nowait(None)

    unsubscribe = bus.subscribe(lambda event: loop.call_soon_threadsafe(put, event))
    try:
        missed = bus.since(since)
        if since and (not missed or missed[0].seq > since + 1) and bus.last_seq > since:
            await ws.send_json({"type": "Resync", "seq": bus.last_seq})  # older than the replay buffer
            missed = []
        last = since
        for event in missed:
            await ws.send_text(json.dumps(event.to_dict()))
            last = event.seq
        while True:
            event = await queue.get()
            if event is None:
                await ws.send_json({"type": "Resync", "seq": bus.last_seq})
                return
            if event.seq > last:
                await ws.send_text(json.dumps(event.to_dict()))
                last = event.seq
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        unsubscribe()


class TokenGate:
    """Every request (pages, API, media, websocket) needs the token: `?token=`, then a
    cookie set from it, or `Authorization: Bearer`."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        cookie = SimpleCookie(headers.get("cookie", "")).get("cht_token")
        bearer = headers.get("authorization", "")
        given = query or (cookie.value if cookie else None) or (bearer[7:] if bearer.startswith("Bearer ") else None)
        if not token_ok(given, self.token):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            response = JSONResponse({"detail": "a token is needed: open the URL cht printed"}, status_code=401)
            return await response(scope, receive, send)
        if query and scope["type"] == "http":
            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    message.setdefault("headers", []).append(
                        (b"set-cookie", f"cht_token={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
                await send(message)
            return await self.app(scope, receive, send_with_cookie)
        return await self.app(scope, receive, send)
