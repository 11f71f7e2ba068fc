"""`cht record --attach`: analysis, transcript and web timeline for the session the ingest
service is recording, instead of a recorder of our own.

It waits for `<data_dir>/active-session`; a marker whose service does not answer on
`ingest.sock` (and no longer holds `ingest.lock`) is stale: removed with a log line, and the
wait goes on. Attached, it follows the session's files (`ManifestFollower`) and ends when
the service closes the session, or dies (the session is then shown as crashed).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cht import events as ev
from cht.config import SceneOptions
from cht.control import ControlServer
from cht.control import request as control_request
from cht.errors import SessionError
from cht.ingest.service import LOCK, MARKER, SOCKET, clear_stale, read_marker
from cht.lifecycle import close_session_log, open_session_log
from cht.live_analysis import LiveAnalysis
from cht.record.follow import ManifestFollower
from cht.session import Manifest, Session, lock_held, segment_index

if TYPE_CHECKING:
    from cht.transcribe.model import SpeechModel

log = logging.getLogger("cht.attach")

POLL_S = 0.25
TICK_S = 0.5


def service_answers(data_dir: Path, timeout: float = 2.0) -> dict | None:
    """The ingest service's status, or None when nothing answers on its socket."""
    try:
        answer = control_request(data_dir / SOCKET, "status", timeout=timeout)
    except SessionError:
        return None
    return answer if answer.get("ok") else None


def wait_for_session(data_dir: Path, timeout: float, should_stop: Callable[[], bool],
                     say: Callable[[str], None]) -> Session:
    """The session the ingest service publishes, once there is one (SessionError after
    `timeout` seconds). Stale markers met on the way are removed."""
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


class AttachedSession:
    """What `cht record` drives (start, wait, stop, manifest, capture), for a session the
    ingest service records."""

    def __init__(self, session: Session, bus: ev.EventBus, *, analyze: bool = True,
                 scene_options: SceneOptions | None = None, speech: SpeechModel | None = None) -> None:
        self.session = session
        self.bus = bus
        self._follower = ManifestFollower(session)
        self.manifest: Manifest = self._follower.refresh()
        self.analysis = LiveAnalysis(session.root, bus, lambda: self.manifest.segments, scene_options=scene_options,
                                     speech=speech, start_over=True) if analyze else None
        self._control = ControlServer(session.control_path, {"status": self._status, "capture": self._capture})
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_handler: logging.Handler | None = None
        self._went_live = False
        self._segments_seen = 0
        self._runs_seen: set[int] = set()

    def start(self) -> None:
        self._log_handler = open_session_log(self.session.log_path)
        log.info("attached to session %s (pid %d)", self.session.id, os.getpid())
        self.bus.publish(ev.SessionStarted(self.session.id, self.manifest.source, str(self.session.root)))
        self._publish_changes()
        if self.analysis is not None:
            self.analysis.start()
        self._control.start()
        self._thread = threading.Thread(target=self._loop, name="cht-attach", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(TICK_S):
            try:
                self.manifest = self._follower.refresh()
                self._publish_changes()
                if not self.session.is_recording():  # the service closed the session, or died
                    self._finish()
                    return
            except Exception:
                log.exception("attach tick failed")

    def _publish_changes(self) -> None:
        manifest = self.manifest
        for seg in manifest.segments[self._segments_seen:]:
            index = segment_index(Path(seg.file))
            self.bus.publish(ev.SegmentStarted(index, seg.file, seg.global_start))
            if self._runs_seen and seg.run not in self._runs_seen:
                self.bus.publish(ev.RecorderRestarted(index, "the client came back", len(self._runs_seen)))
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
        self.manifest = self._follower.refresh()
        if self.analysis is not None:
            self.analysis.finish(self.manifest)
        self._control.close()
        if detached:
            state, reason = "recording", "detached: the ingest service goes on recording"
        else:
            state, reason = self.manifest.state, self.manifest.reason
        log.info("session %s: %s (%s)", self.session.id, state, reason)
        self.bus.publish(ev.SessionStopped(state, reason, self.manifest.duration))
        close_session_log(self._log_handler)
        self._finished.set()

    # -- what `cht record` asks --

    def request_stop(self) -> None:
        if self._stopping.is_set() and self.analysis is not None:
            self.analysis.abandon_transcription()
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
        return self._capture({})

    def _capture(self, _request: dict) -> dict:
        if self.analysis is None:
            raise RuntimeError("analysis is off (--no-analyze)")
        return self.analysis.capture()

    def _status(self, _request: dict) -> dict:
        return {"session": self.session.id, "state": self.manifest.state, "duration": self.manifest.duration,
                "attached": True, "transcript_lag": None if self.analysis is None else self.analysis.lag_s}
