"""Hand what a connected client pushes to whichever recorder run is attached.

Every `write` is a whole unit (MPEG-TS packets, FLV tags), so a recorder that dies mid-write
loses that unit only, and the next run starts on a boundary. While no run is attached (the
recorder is being restarted) the units are held, up to a bound, and handed to the next run
after what it needs to join mid-stream (`resume`): a short recorder outage loses nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import IO, Callable

log = logging.getLogger("cht.ingest")

TS_PACKET = 188
HOLD_BYTES = 32 << 20  # bytes held while no recorder is attached (~1 min of a 4 Mbit/s stream)


class PushFeed:
    def __init__(self, resume: Callable[[], bytes] = lambda: b"", hold_bytes: int = HOLD_BYTES) -> None:
        self._resume = resume
        self._hold_bytes = hold_bytes
        self._held: deque[bytes] = deque()
        self._held_size = 0
        self._sink: IO[bytes] | None = None
        self._sinks_seen = 0
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self.bytes = 0  # bytes the client has pushed

    @property
    def connected(self) -> bool:
        """True until the client has gone (its last bytes may still be on their way)."""
        return not self._ended.is_set()

    def write(self, unit: bytes) -> bool:
        """Hand on one unit; False once the feed has ended (the client should be let go)."""
        if self._ended.is_set():
            return False
        self.bytes += len(unit)
        with self._lock:
            sink = self._sink
            if sink is None:
                self._hold(unit)
                return True
            try:
                sink.write(unit)
                sink.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._sink = None  # the recorder died: hold what comes until the next one
        return True

    def _hold(self, unit: bytes) -> None:
        self._held.append(unit)
        self._held_size += len(unit)
        while self._held_size > self._hold_bytes and len(self._held) > 1:
            self._held_size -= len(self._held.popleft())

    def attach(self, sink: IO[bytes]) -> None:
        """A new recorder run: it gets what it needs to join, then what was held."""
        with self._lock:
            try:
                if self._sinks_seen:
                    sink.write(self._resume())
                while self._held:
                    sink.write(self._held[0])
                    self._held_size -= len(self._held.popleft())
                sink.flush()
            except (BrokenPipeError, ValueError, OSError):
                return
            finally:
                self._sinks_seen += 1
            if self._ended.is_set():
                _close(sink)
            else:
                self._sink = sink

    def detach(self) -> None:
        with self._lock:
            self._sink = None

    def end(self) -> None:
        """The client has gone: the recorder reads to the end of what it was given and exits."""
        with self._lock:
            self._ended.set()
            if self._sink is not None:
                _close(self._sink)
                self._sink = None

    def stop(self) -> None:
        self.end()


def _close(sink: IO[bytes]) -> None:
    try:
        sink.close()
    except OSError:
        pass


class TsAligner:
    """Cut a byte stream into whole 188-byte MPEG-TS packets (the rest waits for more)."""

    def __init__(self) -> None:
        self._rest = b""

    def __call__(self, data: bytes) -> bytes:
        """Whole packets of what came so far; empty input (a stream's end) drops the rest."""
        if not data:
            self._rest = b""
            return b""
        data = self._rest + data
        whole = len(data) - len(data) % TS_PACKET
        self._rest = data[whole:]
        return data[:whole]


def looks_like_ts(data: bytes, packets: int = 3) -> bool:
    """True when `data` starts with `packets` MPEG-TS packets (sync byte every 188 bytes)."""
    return len(data) >= packets * TS_PACKET and all(data[i * TS_PACKET] == 0x47 for i in range(packets))
