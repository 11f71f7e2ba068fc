"""The control channel of a running recording: a Unix socket in the session dir.

One JSON request per connection, one JSON answer: `{"cmd": "status"}`,
`{"cmd": "capture"}`. The socket lives in the session dir, so only users who can read the
session can talk to it; a request that is not a known command gets an error answer.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Callable

from cht.accepting import Acceptor
from cht.errors import SessionError
from cht.sessionlog import spawn

log = logging.getLogger("cht.control")

MAX_REQUEST = 64 * 1024
Handler = Callable[[dict], dict]


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self._handlers = handlers
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.acceptor = Acceptor(f"control socket {path.name}")

    def start(self) -> bool:
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
        except OSError as exc:  # e.g. a path longer than a Unix socket allows
            log.warning("no control channel at %s: %s", self.path, exc)
            sock.close()
            return False
        os.chmod(self.path, 0o600)
        sock.listen(8)
        self._sock = sock
        self._thread = spawn(self._serve, name="cht-control")
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                self.path.unlink(missing_ok=True)
            except OSError:  # a read-only disk: the stale socket answers no one; the next server replaces it
                pass

    def _serve(self) -> None:
        while (accepted := self.acceptor.accept(lambda: self._sock)) is not None:
            conn, _ = accepted
            with conn:
                conn.settimeout(2.0)
                try:
                    conn.sendall((json.dumps(self._answer(_read_line(conn))) + "\n").encode())
                except OSError:
                    continue

    def _answer(self, raw: bytes) -> dict:
        try:
            request = json.loads(raw)
            handler = self._handlers[request["cmd"]]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": f"unknown request; commands: {', '.join(self._handlers)}"}
        try:
            return {"ok": True, **handler(request)}
        except Exception as exc:  # a failing command must not take the channel down
            log.exception("control command %s failed", request.get("cmd"))
            return {"ok": False, "error": str(exc)}


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def request(path: Path, cmd: str, timeout: float = 10.0) -> dict:
    """Send one command to a running recording; SessionError if none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
            answer = _read_line(sock)
        except OSError:
            raise SessionError("no running recording answers for this session: is `cht record` still running?") from None
    try:
        return json.loads(answer)
    except ValueError:
        raise SessionError("the recording answered with garbage") from None
