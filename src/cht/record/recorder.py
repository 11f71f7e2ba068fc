"""One recorder run: an ffmpeg process writing numbered fMP4 segments.

ffmpeg's stderr goes straight into the session's `recorder.log` (a file, not a pipe, so the
recorder never depends on cht being alive to log its last words). It runs in its own process
group, so a Ctrl-C in the terminal reaches cht only and cht decides how the recording ends,
and it gets SIGINT if cht dies, so it finishes its last fragment instead of being orphaned.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Callable

from cht.sessionlog import spawn

log = logging.getLogger("cht.recorder")

_ERROR_WORDS = ("error", "failed", "refused", "invalid", "no such", "denied", "unable")


# The child sets its parent-death signal itself, waits until its start time if it has one,
# and then execs the command: no preexec_fn.
# For a preexec_fn, Python runs PyOS_AfterFork_Child in the forked child, which frees the
# other threads' thread-locals there; a PyAV reformatter kept by the follower's decoding
# thread is among them, and its destructor waits on a condition variable of a slice thread
# the child does not have, so the fork never returned and the recorder was never restarted
# (seen in `bench/soak.py`, 2026-11-29).
_EXEC_WITH_PDEATHSIG = ("import ctypes, os, signal, sys, time\n"
                        "signal.signal(signal.SIGINT, signal.SIG_DFL)  # stopped while it waits: no traceback\n"
                        "ctypes.CDLL(None).prctl(1, int(sys.argv[1]))  # PR_SET_PDEATHSIG\n"
                        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
                        "os.execvp(sys.argv[3], sys.argv[3:])")


def die_with_parent(args: list[str], sig: int = signal.SIGINT, not_before: float = 0.0) -> list[str]:
    """`args` run so that the process gets `sig` when cht dies (even by kill -9): the same
    pid, the command line of the wrapper holds `args`, then exec makes it `args`, at epoch
    `not_before` at the earliest (the process is there, and can be stopped, meanwhile).

    Best effort for a graceful end: the kernel sends the signal again each time the child is
    handed to another of cht's dying threads, and a second SIGINT makes ffmpeg abandon its
    last fragment (at most `fragment_s` of media, which `cht rebuild` then cuts off)."""
    return [sys.executable, "-I", "-S", "-c", _EXEC_WITH_PDEATHSIG, str(int(sig)), f"{not_before:.3f}", *args]


class Recorder:
    def __init__(self, args: list[str], *, run: int, log_path: Path, stdin_fed: bool = False,
                 stdout_sink: Callable[[bytes], None] | None = None, not_before: float = 0.0) -> None:
        self.args = args
        self._not_before = not_before  # epoch s ffmpeg starts at the earliest (a paced file's keyframe)
        self._stdout_sink = stdout_sink  # gets what ffmpeg writes to stdout (a live relay)
        self.run = run
        self._log_path = log_path
        self._log_offset = 0
        self._stdin_fed = stdin_fed
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self._log_path, "ab") as log_file:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log_file.write(f"--- {stamp} run {self.run}: {' '.join(self.args)}\n".encode())
            log_file.flush()
            self._log_offset = log_file.tell()
            self._proc = subprocess.Popen(
                die_with_parent(self.args, not_before=self._not_before),
                stdin=subprocess.PIPE if self._stdin_fed else subprocess.DEVNULL,
                stdout=subprocess.PIPE if self._stdout_sink else subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
            )
        log.info("run %d: recorder pid %d", self.run, self._proc.pid)
        if self._stdout_sink is not None:
            spawn(self._pump_stdout, name="cht-recorder-out")

    def _pump_stdout(self) -> None:
        """Read stdout as fast as ffmpeg writes it, so a slow consumer can never hold the
        recorder back: the sink must not block."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                break
            if not data:
                break
            try:
                self._stdout_sink(data)
            except Exception:
                log.exception("run %d: the stdout consumer failed", self.run)
        self._proc.stdout.close()
        self._stdout_sink(b"")  # the end of this run's stream

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

    def output(self, limit: int = 64 * 1024) -> str:
        """What this run has written to the log so far (its last `limit` bytes)."""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(max(self._log_offset, f.seek(0, 2) - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def last_error(self) -> str:
        """The most telling line ffmpeg wrote, for a one-line message."""
        lines = [line.strip() for line in self.output().splitlines() if line.strip()]
        for line in reversed(lines):
            if any(word in line.lower() for word in _ERROR_WORDS):
                return line
        return lines[-1] if lines else "ffmpeg exited without saying why"

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
        return self._proc.returncode
