"""`--on-segment CMD`: run a command (an upload, a copy) on each segment once it is finished.

The command gets two more arguments, the segment's path and the session id, as an argument
list: no shell ever sees them. It runs on a thread of its own, one segment after the other in
order, so a slow or hanging command never delays the recorder; the bus listener only queues.
A segment is finished when a later one has media (the recorder has closed it) or when the
session stops; the manifest says which, so a listener that subscribed late (an ingest room
opens before it is announced) misses none. Failures are logged with the command's last line.
"""

from __future__ import annotations

import logging
import queue
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Callable

from cht import events as ev
from cht.errors import SessionError
from cht.session import Manifest, Session
from cht.sessionlog import spawn

log = logging.getLogger("cht.hooks")

RUN_TIMEOUT_S = 3600.0  # seconds one run may take before it is killed (and logged)
DRAIN_S = 120.0  # seconds a stop waits for the queued runs before it kills the one running


def parse_command(text: str) -> list[str]:
    """CMD as an argument list (shell-like quoting, no shell); SessionError if it cannot run."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise SessionError(f"--on-segment {text!r}: {exc}: quote it as a shell would") from None
    if not argv:
        raise SessionError("--on-segment needs a command, e.g. --on-segment 'rclone copyto'")
    if shutil.which(argv[0]) is None:
        raise SessionError(f"--on-segment: {argv[0]!r} is not a program this user can run: give its path, "
                           "or a command on PATH")
    return argv


class SegmentHook:
    """A bus listener that hands each finished segment to `argv` on a worker thread."""

    def __init__(self, argv: list[str], session: Session, manifest: Callable[[], Manifest]) -> None:
        self.argv, self.session, self.manifest = argv, session, manifest
        self.ran: list[tuple[str, int]] = []  # (segment file, exit code), in order
        self._queued: set[str] = set()
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._events_lock = threading.Lock()
        self._file_log = _OwnLines(session)
        log.addHandler(self._file_log)
        self._thread = spawn(self._work, name="cht-on-segment")

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, (ev.SegmentStarted, ev.RecorderRestarted, ev.ManifestUpdated, ev.SessionStopped)):
            self._queue_finished(stopped=isinstance(event, ev.SessionStopped))

    def catch_up(self) -> None:
        """Hand over what finished before this hook was subscribed (an ingest room is announced
        once its recording has started)."""
        self._queue_finished(stopped=False)

    def _queue_finished(self, *, stopped: bool) -> None:
        segments = self.manifest().segments
        done = segments if stopped else segments[:-1]
        with self._events_lock:
            for seg in done:
                if seg.file not in self._queued:
                    self._queued.add(seg.file)
                    self._queue.put(self.session.root / seg.file)

    def close(self, timeout: float = DRAIN_S) -> None:
        """Hand over what the final manifest lists (a segment whose last fragment was written
        after the stop was announced was missed: seen under load), let the queued runs finish
        (at most `timeout`), then kill what still runs."""
        self._queue_finished(stopped=self.manifest().state != "recording")
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            with self._lock:
                proc = self._proc
            left = self._queue.qsize()
            log.warning("--on-segment still running after %g s: killed; %d segment(s) not handed over", timeout,
                        max(left - 1, 0))
            if proc is not None:
                proc.kill()
            self._thread.join(5)
        log.removeHandler(self._file_log)
        self._file_log.close()

    @property
    def _extra(self) -> dict:
        return {"cht_session": self.session.id}

    def _work(self) -> None:
        while (path := self._queue.get()) is not None:
            code = self._run(path)
            self.ran.append((path.name, code))

    def _run(self, path: Path) -> int:
        argv = [*self.argv, str(path), self.session.id]
        try:
            with self._lock:
                self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True, errors="replace")
            output, _ = self._proc.communicate(timeout=RUN_TIMEOUT_S)
            code = self._proc.returncode
        except subprocess.TimeoutExpired:
            self._proc.kill()
            output, _ = self._proc.communicate()
            code = -9
            log.warning("--on-segment %s: killed after %g s", path.name, RUN_TIMEOUT_S, extra=self._extra)
        except OSError as exc:
            log.warning("--on-segment %s: cannot run %s (%s)", path.name, self.argv[0], exc.strerror or exc,
                        extra=self._extra)
            return -1
        finally:
            with self._lock:
                self._proc = None
        last = (output.strip().splitlines() or [""])[-1][:300]
        if code == 0:
            log.info("--on-segment %s: done", path.name, extra=self._extra)
        else:
            log.warning("--on-segment %s: exit code %s: %s", path.name, code, last, extra=self._extra)
        return code


class _OwnLines(logging.FileHandler):
    """This hook's lines in its session's `session.log` when the recording's own handler no
    longer writes there (after the stop, while the last segments are handed over)."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.log_path, encoding="utf-8", delay=True)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.session_id = session.id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "cht_session", None) != self.session_id:
            return False
        return not any(isinstance(h, logging.FileHandler) and h is not self and h.baseFilename == self.baseFilename
                       for h in logging.getLogger("cht").handlers)
