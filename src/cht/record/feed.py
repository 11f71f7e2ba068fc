"""Fan a generator's MPEG-TS output into whichever recorder is running now.

The generator (a live source) keeps running while recorders die and restart; bytes that
arrive while no recorder is attached are the outage and are discarded, exactly as a live
broadcast would be missed. Writes never block the generator on a dead recorder.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Protocol

from cht.record.recorder import die_with_parent
from cht.sessionlog import spawn

log = logging.getLogger(__name__)

TS_PACKET = 188


class Feed(Protocol):
    """Bytes from outside handed to the recorder run's stdin (the demo generator, a pushed
    stream): attached to each new run, detached when it dies, stopped with the session."""

    @property
    def connected(self) -> bool: ...

    def attach(self, sink: IO[bytes]) -> None: ...

    def detach(self) -> None: ...

    def stop(self) -> None: ...


class PipeFeed:
    def __init__(self, args: list[str], log_path: Path) -> None:
        self._args = args
        self._log_path = log_path
        self._proc: subprocess.Popen | None = None
        self._sink: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._offset = 0  # bytes read so far, to hand a new sink whole TS packets only
        self._skip = 0

    def start(self) -> None:
        with open(self._log_path, "ab") as log_file:
            log_file.write(f"--- generator: {' '.join(self._args)}\n".encode())
            log_file.flush()
            self._proc = subprocess.Popen(
                die_with_parent(self._args, signal.SIGTERM),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not ffmpeg's
            )
        self._thread = spawn(self._pump, name="cht-feed")

    def attach(self, sink: IO[bytes]) -> None:
        with self._lock:
            self._sink = sink
            self._skip = (-self._offset) % TS_PACKET

    def detach(self) -> None:
        with self._lock:
            self._sink = None

    @property
    def connected(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        self.detach()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread:
            self._thread.join(timeout=5)

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        while True:
            chunk = stdout.read1(64 * 1024)
            if not chunk:
                break
            with self._lock:
                sink, skip = self._sink, self._skip
                self._skip = max(0, skip - len(chunk))
            self._offset += len(chunk)
            if sink is None:
                continue
            try:
                sink.write(chunk[skip:])
                sink.flush()
            except (BrokenPipeError, ValueError, OSError):
                with self._lock:
                    if self._sink is sink:
                        self._sink = None
        log.info("demo generator ended")
