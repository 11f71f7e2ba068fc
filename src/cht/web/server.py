"""Run the web UI beside a recording (a uvicorn thread) or on its own (`cht serve`)."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time

import uvicorn

from cht.config import ui_url
from cht.errors import SessionError
from cht.web.app import UiState, create_app
from cht.web.guard import LocalGuard
from cht.config import is_loopback

log = logging.getLogger("cht.web")
PORT_TRIES = 20  # a busy default port moves on to the next ones


class WebServer:
    def __init__(self, state: UiState, *, host: str, port: int, token: str | None = None,
                 fixed_port: bool = False) -> None:
        if not is_loopback(host) and not token:
            token = secrets.token_urlsafe(18)  # exposed beyond this machine: never without a token
        self.state, self.host, self.token = state, host, token
        self.port = port if fixed_port else _free_port(host, port)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def url(self, session_id: str | None = None) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else socket.gethostname()
        base = ui_url(session_id, host=host, port=self.port) if session_id else f"http://{host}:{self.port}/"
        return base + (("&" if "?" in base else "?") + f"token={self.token}" if self.token else "")

    def start(self) -> None:
        app = LocalGuard(create_app(self.state, self.token), self.host)
        config = uvicorn.Config(app, host=self.host, port=self.port,
                                log_level="warning", access_log=False, ws_ping_interval=10, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="cht-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SessionError(f"the web UI cannot listen on {self.host}:{self.port}: "
                                   "choose another --port (or --no-ui)")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None

    def serve_forever(self) -> None:
        self.start()
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()


def _free_port(host: str, port: int) -> int:
    for candidate in range(port, port + PORT_TRIES):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    raise SessionError(f"ports {port}–{port + PORT_TRIES - 1} on {host} are all busy: choose one with --port")
