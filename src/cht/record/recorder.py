"""One recorder run: an ffmpeg process writing numbered fMP4 segments.

Its stderr goes, line by line, to the session's recorder log; the last lines are kept to
explain a failure. It runs in its own process group so a Ctrl-C in the terminal reaches cht
only, and cht decides how the recording ends (gracefully, finishing the last fragment).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import threading
from collections import deque
from typing import IO

log = logging.getLogger("cht.recorder")


def forward_lines(stream: IO[bytes], prefix: str, tail: deque[str] | None = None) -> None:
    """Copy a child's stderr into the session log, line by line, keeping the last few."""
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            if tail is not None:
                tail.append(line)
            log.info("%s: %s", prefix, line)


def die_with_parent(sig: int = signal.SIGINT):
    """A preexec_fn: the child gets `sig` if cht dies (even by kill -9), so no recorder is
    orphaned; SIGINT lets ffmpeg finish its fragment first."""

    def setup() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    return setup


class Recorder:
    def __init__(self, args: list[str], *, run: int, stdin_fed: bool = False) -> None:
        self.args = args
        self.run = run
        self._stdin_fed = stdin_fed
        self._tail: deque[str] = deque(maxlen=20)
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        log.info("run %d: %s", self.run, " ".join(self.args))
        self._proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE if self._stdin_fed else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        self._reader = threading.Thread(
            target=forward_lines,
            args=(self._proc.stderr, f"run {self.run}", self._tail),
            name=f"cht-rec-{self.run}",
            daemon=True,
        )
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def stdin(self) -> IO[bytes] | None:
        return self._proc.stdin if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def last_error(self) -> str:
        """The most telling stderr line, for a one-line message."""
        if self._reader:
            self._reader.join(timeout=1)
        for line in reversed(self._tail):
            if "error" in line.lower() or "failed" in line.lower() or "refused" in line.lower():
                return line
        return self._tail[-1] if self._tail else "no output from ffmpeg"

    def output(self) -> str:
        if self._reader:
            self._reader.join(timeout=1)
        return "\n".join(self._tail)

    def stop(self, timeout: float) -> int | None:
        """Ask ffmpeg to finish its last fragment and exit; kill it if it will not."""
        if not self.alive():
            return self.returncode
        assert self._proc is not None
        if self._proc.stdin:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("run %d: did not stop within %g s, killed", self.run, timeout)
            self._proc.kill()
            self._proc.wait()
        if self._reader:
            self._reader.join(timeout=2)
        return self._proc.returncode
