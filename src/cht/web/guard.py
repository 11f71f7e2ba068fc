"""Everything a request names is checked before it touches the filesystem, and every
request must come from a page of this server (`LocalGuard`: Host and Origin, see cht.origin).

Session ids must be ids the data dir has; media names must be ones the session's own
records list (manifest segments, frames.jsonl); and the resolved path must stay inside the
session dir, so `..`, encoded dots, absolute paths and symlinks pointing out all fail.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from cht.errors import ChtError
from cht.origin import host_allowed, origin_allowed
from cht.session import Session
from cht.web.summaries import frame_names

_SEGMENT = re.compile(r"seg_\d{5}\.mp4")
_FRAME = re.compile(r"\d{6}\.\d{3}(-manual)?(\.thumb)?\.jpg")  # what FrameWriter names pictures


def session_or_404(data_dir: Path, session_id: str, only: str | None = None) -> Session:
    if only is not None and session_id != only:
        raise HTTPException(404, "no such session")
    try:
        return Session.open(data_dir, session_id)
    except ChtError:
        raise HTTPException(404, "no such session") from None


def inside(session: Session, relative: str) -> Path:
    """The file, if it resolves inside the session dir (symlinks followed) and is a file."""
    root = session.root.resolve()
    path = (session.root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "no such file")
    return path


def segment_path(session: Session, name: str) -> Path:
    if not _SEGMENT.fullmatch(name):
        raise HTTPException(404, "no such segment")
    known = {Path(s.file).name for s in session.current_manifest().segments}
    if name not in known and not (session.is_recording() and (session.segments_dir / name).exists()):
        raise HTTPException(404, "no such segment")
    return inside(session, f"segments/{name}")


def frame_path(session: Session, name: str) -> Path:
    if not _FRAME.fullmatch(name):
        raise HTTPException(404, "no such frame")
    if name not in frame_names(session.root):
        raise HTTPException(404, "no such frame")
    return inside(session, f"frames/{name}")


def token_ok(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class LocalGuard:
    """ASGI middleware: answer only requests addressed to a name this server is bound to, and
    refuse WebSockets and state-changing requests sent by another site's page."""

    def __init__(self, app, bound_host: str) -> None:
        self.app, self.bound_host = app, bound_host

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host")
        why = None
        if not host_allowed(host, self.bound_host):
            why = "this server answers only the address it listens on: open the URL cht printed"
        elif (scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS) \
                and not origin_allowed(headers.get("origin"), host):
            why = "requests from another site's page are refused"
        if why is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 4403})
        return await JSONResponse({"detail": why}, status_code=403)(scope, receive, send)
