"""A session recorded by another process, followed from its files: `cht follow` and
`cht record --attach`.

Segments and gaps come from the files (`record.follow.ManifestFollower`: each segment's
metadata, run note and complete fragments, the recorder's own derivation); the follower
feeds the stages; the events a recorder would publish (new segment, restart, duration) are
published from what the files show. It ends when the recording stops (the session's lock
is released: the recorder closed it, or died); a finished session is read to its end at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from cht import events as ev
from cht.control import ControlServer
from cht.control import request as control_request
from cht.errors import SessionError
from cht.follower import Follower
from cht.record.follow import ManifestFollower
from cht.recording import capture_with, claim_analysis
from cht.session import Manifest, Session, lock_held, segment_index
from cht.sessionlog import close_session_log, open_session_log, spawn
from cht.stages import StageConfig, StageContext, build_stages

log = logging.getLogger("cht.follow")

TICK_S = 0.5
POLL_S = 0.25


class WatchedSession:
    def __init__(self, session: Session, bus: ev.EventBus, stages: tuple[str, ...], config: StageConfig) -> None:
        self.session = session
        self.bus = bus
        self._files = ManifestFollower(session)
        self.manifest: Manifest = self._files.refresh()
        self._analysis_fd = claim_analysis(session) if stages else None
        context = StageContext(session.id, session.root, session.root, bus, lambda: self.manifest, start_over=True)
        self.follower = Follower(session.root, bus, build_stages(stages, context, config),
                                 lambda: self.manifest.segments)
        self._control = ControlServer(session.control_path, {"status": lambda _: self.status(),
                                                             "capture": lambda _: capture_with(self.follower)})
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._asked = False
        self._thread: threading.Thread | None = None
        self._log_handler: logging.Handler | None = None
        self._went_live = False
        self._segments_seen = 0
        self._runs_seen: set[int] = set()

    def start(self) -> None:
        self._log_handler = open_session_log(self.session.log_path, self.session.id)
        log.info("following session %s (pid %d)", self.session.id, os.getpid())
        self.bus.publish(ev.SessionStarted(self.session.id, self.manifest.source, str(self.session.root)))
        self._publish_changes()
        self.follower.start()
        if self.follower.stages and not _answers(self.session.control_path):
            self._control.start()  # the recorder's own process does not analyse: status and capture are here
        self._thread = spawn(self._loop, name="cht-watch")

    def _loop(self) -> None:
        while not self._stopping.wait(TICK_S):
            try:
                self.manifest = self._files.refresh()
                self._publish_changes()
                if not self.session.is_recording():  # the recorder closed the session, or died
                    self._finish()
                    return
            except Exception:
                log.exception("follow tick failed")

    def _publish_changes(self) -> None:
        manifest = self.manifest
        for seg in manifest.segments[self._segments_seen:]:
            index = segment_index(Path(seg.file))
            self.bus.publish(ev.SegmentStarted(index, seg.file, seg.global_start))
            if self._runs_seen and seg.run not in self._runs_seen:
                self.bus.publish(ev.RecorderRestarted(index, "a new recorder run", len(self._runs_seen)))
            self._runs_seen.add(seg.run)
        self._segments_seen = len(manifest.segments)
        if manifest.duration > 0:
            if not self._went_live:
                self._went_live = True
                self.bus.publish(ev.WentLive(manifest.duration))
            last = manifest.segments[-1]
            self.bus.publish(ev.DurationChanged(manifest.duration, segment_index(Path(last.file)),
                                                sum(s.bytes for s in manifest.segments)))
            self.bus.publish(ev.LiveTick(manifest.duration))

    def _finish(self, detached: bool = False) -> None:
        if self._finished.is_set():
            return
        self.manifest = self._files.refresh()
        self.follower.finish()
        self._control.close()
        if self._analysis_fd is not None:
            os.close(self._analysis_fd)
            self._analysis_fd = None
        if detached:
            state, reason = "recording", "detached: the recorder goes on recording"
        else:
            state, reason = self.manifest.state, self.manifest.reason
        log.info("session %s: %s (%s)", self.session.id, state, reason)
        self.bus.publish(ev.SessionStopped(state, reason, self.manifest.duration))
        close_session_log(self._log_handler)
        self._finished.set()

    # -- what `cht record` / `cht follow` drive --

    def request_stop(self) -> None:
        if self._asked:
            self.follower.abandon()
        self._asked = True
        self._stopping.set()

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> Manifest:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._finish(detached=self.session.is_recording())
        return self.manifest

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def capture(self) -> dict:
        return capture_with(self.follower)

    def status(self) -> dict:
        return {"session": self.session.id, "state": self.manifest.state, "duration": self.manifest.duration,
                "following": True, "pid": os.getpid(), **self.follower.status()}


def _answers(path: Path) -> bool:
    try:
        return bool(control_request(path, "status", timeout=1.0).get("ok"))
    except SessionError:
        return False


# -- `cht record --attach`: the session the ingest service records --

def service_answers(data_dir: Path, timeout: float = 2.0) -> dict | None:
    """The ingest service's status, or None when nothing answers on its socket."""
    from cht.ingest.service import SOCKET

    try:
        answer = control_request(data_dir / SOCKET, "status", timeout=timeout)
    except SessionError:
        return None
    return answer if answer.get("ok") else None


def wait_for_session(data_dir: Path, timeout: float, should_stop: Callable[[], bool],
                     say: Callable[[str], None]) -> Session:
    """The session the ingest service publishes, once there is one (SessionError after
    `timeout` seconds). Stale markers met on the way are removed."""
    from cht.ingest.service import LOCK, MARKER, clear_stale, read_marker

    deadline = time.monotonic() + timeout
    marker = data_dir / MARKER
    while True:
        if marker.exists():
            status = service_answers(data_dir)
            session = read_marker(data_dir)
            if status is not None and session is not None and status.get("session") == session.id:
                return session
            if status is None and not lock_held(data_dir / LOCK) and (message := clear_stale(data_dir)):
                log.warning("%s", message)
                say(f"{message}; still waiting")
        if should_stop():
            raise SessionError("stopped before an ingest session appeared: nothing was attached")
        if time.monotonic() > deadline:
            raise SessionError(f"no ingest session to attach to after {timeout:g} s: start `cht ingest --listen URL` "
                               "with this data dir and push a stream to it, or wait longer with --timeout")
        time.sleep(POLL_S)
