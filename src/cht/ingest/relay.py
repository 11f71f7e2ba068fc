"""Relay the live stream to viewers as MPEG-TS over HTTP, the pull URL ffplay and VLC open
(`http://HOST:PORT/live.ts`, or `/live/SESSION.ts`).

The recorder's second output feeds `publish`, which never blocks: each viewer has its own
bounded queue and its own thread; a viewer that falls that far behind, or stops reading,
is dropped. Recording never waits for anyone watching. Bound beyond loopback, a request
needs the token (`?token=` or `Authorization: Bearer`); on loopback, a request must name a
loopback host (a DNS-rebinding page names its own) and must not come from another site's page.

No token is needed to open a connection, so what connections can hold is capped: requests
being read (each with one deadline for the whole request), viewers, and a descriptor
shortage only pauses the accept loop.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import socket
import threading
import time
from collections import deque
from urllib.parse import parse_qs, urlsplit

from cht.accepting import Acceptor
from cht.errors import SourceError
from cht.config import is_loopback
from cht.origin import host_allowed, origin_allowed

log = logging.getLogger("cht.ingest")

VIEWER_QUEUE_BYTES = 8 << 20  # bytes a viewer may fall behind (~15 s at 4 Mbit/s) before it is dropped
SEND_TIMEOUT_S = 10.0  # seconds one send to a viewer may block
MAX_REQUEST = 8192
REQUEST_TIMEOUT_S = 5.0  # seconds for a whole request to arrive, however slowly it trickles
MAX_PENDING = 16  # requests being read at once; more connections are closed at once
MAX_VIEWERS = 64  # viewers of all sessions together
PATH = re.compile(r"^/live(?:/([A-Za-z0-9][A-Za-z0-9._-]{0,63}))?\.ts$")


class _Viewer:
    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self.closed = False

    def offer(self, data: bytes) -> bool:
        """Queue `data`; False (and the viewer is closed) when it is too far behind."""
        with self._cond:
            if self.closed:
                return False
            if self._queued + len(data) > VIEWER_QUEUE_BYTES:
                log.warning("relay viewer %s is too slow: dropped", self.address)
                self.closed = True
                self._cond.notify()
                return False
            self._queue.append(data)
            self._queued += len(data)
            self._cond.notify()
            return True

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()

    def serve(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self.closed:
                        self._cond.wait()
                    if self.closed:
                        return
                    data = b"".join(self._queue)
                    self._queue.clear()
                    self._queued = 0
                self.sock.sendall(data)
        except OSError:
            log.info("relay viewer %s left", self.address)
        finally:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


class Relay:
    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        if not is_loopback(host) and not token:
            token = secrets.token_urlsafe(18)
        self.host, self.port, self.token = host, port, token
        self._viewers: dict[str, list[_Viewer]] = {}
        self._current: str | None = None  # what /live.ts shows: the session that went live last
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._pending = threading.Semaphore(MAX_PENDING)
        self.acceptor = Acceptor(f"relay {host}:{port}")

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise SourceError(f"relay cannot listen on {self.host}:{self.port} ({exc.strerror}): "
                              "choose another --relay-port, or --no-relay") from None
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._sock = sock
        threading.Thread(target=self._accept, name="cht-relay", daemon=True).start()

    def url(self, session_id: str | None = None) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else socket.gethostname()
        path = f"/live/{session_id}.ts" if session_id else "/live.ts"
        return f"http://{host}:{self.port}{path}" + (f"?token={self.token}" if self.token else "")

    def open(self, session_id: str) -> None:
        """A session went live: /live.ts now shows it."""
        with self._lock:
            self._viewers.setdefault(session_id, [])
            self._current = session_id

    def close(self, session_id: str) -> None:
        """A session ended: its viewers are let go."""
        with self._lock:
            viewers = self._viewers.pop(session_id, [])
            if self._current == session_id:
                self._current = next(reversed(self._viewers), None)
        for viewer in viewers:
            viewer.close()

    def publish(self, session_id: str, data: bytes) -> None:
        """Hand live MPEG-TS (whole packets) to every viewer of the session; never blocks."""
        if not data:
            return
        with self._lock:
            viewers = self._viewers.get(session_id)
            if not viewers:
                return
            alive = [v for v in viewers if v.offer(data)]
            if len(alive) != len(viewers):
                viewers[:] = alive

    def viewers(self, session_id: str) -> int:
        with self._lock:
            return len(self._viewers.get(session_id, []))

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            everyone = [v for vs in self._viewers.values() for v in vs]
            self._viewers.clear()
        for viewer in everyone:
            viewer.close()

    def _accept(self) -> None:
        while (accepted := self.acceptor.accept(lambda: self._sock)) is not None:
            conn, addr = accepted
            if not self._pending.acquire(blocking=False):
                conn.close()  # a flood of unfinished requests: they cost nothing beyond these
                continue
            try:
                threading.Thread(target=self._handle, args=(conn, f"{addr[0]}:{addr[1]}"), name="cht-relay-viewer",
                                 daemon=True).start()
            except RuntimeError:
                self._pending.release()
                conn.close()

    def _handle(self, conn: socket.socket, address: str) -> None:
        try:
            try:
                request = _read_request(conn, time.monotonic() + REQUEST_TIMEOUT_S)
            finally:
                self._pending.release()
            status, session_id = self._route(request)
            if status == "200 OK" and self._count() >= MAX_VIEWERS:
                status = "503 Service Unavailable"
            if status != "200 OK":
                conn.sendall(f"HTTP/1.0 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
                conn.close()
                return
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\nCache-Control: no-cache\r\n"
                         b"Connection: close\r\n\r\n")
        except (OSError, ValueError):
            conn.close()
            return
        conn.settimeout(SEND_TIMEOUT_S)
        viewer = _Viewer(conn, address)
        with self._lock:
            viewers = self._viewers.get(session_id)
            if viewers is None:
                conn.close()
                return
            viewers.append(viewer)
        log.info("relay viewer %s watching %s", address, session_id)
        viewer.serve()

    def _count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._viewers.values())

    def _route(self, request: bytes) -> tuple[str, str | None]:
        lines = request.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", None
        if parts[0] != "GET":
            return "405 Method Not Allowed", None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if not host_allowed(headers.get("host"), self.host) or not origin_allowed(headers.get("origin"),
                                                                                  headers.get("host")):
            return "403 Forbidden", None
        url = urlsplit(parts[1])
        if self.token is not None and not self._token_ok(url.query, lines[1:]):
            return "401 Unauthorized", None
        match = PATH.match(url.path)
        if not match:
            return "404 Not Found", None
        with self._lock:
            session_id = match.group(1) or self._current
            if session_id is None or session_id not in self._viewers:
                return "404 Not Found", None
        return "200 OK", session_id

    def _token_ok(self, query: str, headers: list[str]) -> bool:
        given = parse_qs(query).get("token", [""])[0]
        for header in headers:
            name, _, value = header.partition(":")
            if name.strip().lower() == "authorization" and value.strip().lower().startswith("bearer "):
                given = value.strip()[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())


def _read_request(conn: socket.socket, deadline: float) -> bytes:
    """The request head, which must arrive whole by `deadline` (a trickle of a byte every few
    seconds would otherwise hold the connection for ever)."""
    data = b""
    while b"\r\n\r\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ValueError("the request did not arrive in time")
        conn.settimeout(left)
        chunk = conn.recv(1024)
        if not chunk:
            raise ValueError("closed before the request ended")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.split(b"\r\n\r\n", 1)[0]
