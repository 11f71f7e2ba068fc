"""An accept loop that survives running out of file descriptors.

`accept()` fails with EMFILE/ENFILE while the process (or the system) has no descriptor to
spare; returning on that error, as a plain loop does, leaves the socket in LISTEN with a full
backlog for good and nothing logged. Here the loop backs off and tries again until the
socket is closed by its owner, and says whether it is accepting, for the status.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable

log = logging.getLogger("cht.ingest")

BACKOFF_S = (0.05, 1.0)  # seconds: first and longest wait between tries while accept() fails


class Acceptor:
    def __init__(self, label: str) -> None:
        self.label = label
        self.accepting = True
        self.error: str | None = None  # why accept() last failed, while it is failing

    def accept(self, current: Callable[[], socket.socket | None]) -> tuple[socket.socket, tuple] | None:
        """The next connection, or None once the owner has closed the socket."""
        wait = BACKOFF_S[0]
        while (sock := current()) is not None and sock.fileno() != -1:
            try:
                conn, addr = sock.accept()
            except OSError as exc:
                if current() is None or sock.fileno() == -1:
                    return None
                if self.accepting:
                    _say("%s: cannot accept connections (%s): retrying", self.label, exc.strerror or exc)
                self.accepting, self.error = False, exc.strerror or str(exc)
                time.sleep(wait)
                wait = min(BACKOFF_S[1], wait * 2)
                continue
            if not self.accepting:
                _say("%s: accepting connections again", self.label)
                self.accepting, self.error = True, None
            return conn, addr
        return None


def _say(message: str, *args) -> None:
    """Log, unless logging itself needs a descriptor (a log file opened lazily) and none is left."""
    try:
        log.warning(message, *args)
    except OSError:
        pass
