"""A recording in this process: the recorder (`Lifecycle`) and a follower of its files.

`cht record` is one; every room of `cht ingest` is one. The recorder only records; the
follower derives keyframes, waveform and transcript from what it wrote, exactly as it would
from another process's files. This object drives both and owns the session's control
socket (status, capture).
"""

from __future__ import annotations

import logging
import os
import threading

from cht import events as ev
from cht.control import ControlServer
from cht.errors import SessionError
from cht.follower import Follower
from cht.lifecycle import Lifecycle
from cht.session import Manifest, Session, lock_holder, take_lock
from cht.sessionlog import spawn

log = logging.getLogger("cht.lifecycle")

ANALYSIS_LOCK = ".analysis.lock"


def claim_analysis(session: Session) -> int:
    """One follower per session: two would write the same files. SessionError if taken."""
    path = session.root / ANALYSIS_LOCK
    fd = take_lock(path)
    if fd is None:
        raise SessionError(f"session {session.id} is already being analysed (pid {lock_holder(path)}): "
                           "stop that first, or record with --no-analyze")
    return fd


def capture_with(follower: Follower) -> dict:
    """Save the picture shown now as a keyframe; RuntimeError says why it cannot."""
    scenes = follower.stage("scenes")
    if scenes is None:
        raise RuntimeError("keyframes are off for this session (--no-analyze, or the scenes stage stopped)")
    record = scenes.capture()
    if record is None:
        raise RuntimeError("no picture decoded yet (an audio-only source, or too early)")
    return {"t": record.t, "file": record.file}


class Recording:
    def __init__(self, lifecycle: Lifecycle, follower: Follower, *, control: bool = True) -> None:
        self.lifecycle = lifecycle
        self.follower = follower
        self.session = lifecycle.session
        self.bus = lifecycle.bus
        self._control = ControlServer(self.session.control_path, {"status": lambda _: self.status(),
                                                                  "capture": lambda _: self.capture()}) \
            if control else None
        self._analysis_fd: int | None = None
        self._asked = False
        self._finish_lock = threading.Lock()
        self._finished = threading.Event()
        # The recorder may end by itself (end of source, disk full): the follower then finishes at once.
        self.bus.subscribe(lambda e: isinstance(e, ev.SessionStopped) and spawn(self._finish, name="cht-follow-finish"))

    @property
    def manifest(self) -> Manifest:
        return self.lifecycle.manifest

    def start(self) -> None:
        """Start recording, then following; a SourceError or SessionError leaves nothing running."""
        if self.follower.stages:
            self._analysis_fd = claim_analysis(self.session)
        try:
            self.lifecycle.start()
        except BaseException:
            self._release()
            raise
        self.follower.start()
        if self._control is not None:
            self._control.start()

    def request_stop(self) -> None:
        """Ask for a stop (a signal handler may call this); asked again, what is not
        transcribed yet is left for `cht transcribe`."""
        if self._asked:
            self.follower.abandon()
        self._asked = True
        self.lifecycle.request_stop()

    @property
    def stop_requested(self) -> bool:
        return self.lifecycle.stop_requested

    def stop(self, reason: str = "stopped by user") -> Manifest:
        self.lifecycle.stop(reason)
        self._finish()
        return self.manifest

    def wait(self, timeout: float | None = None) -> bool:
        """True once the recording has ended and the follower has finished with it."""
        return self._finished.wait(timeout)

    def reconnect(self, feed) -> None:
        self.lifecycle.reconnect(feed)

    def capture(self) -> dict:
        return capture_with(self.follower)

    def status(self) -> dict:
        return {**self.lifecycle.status(), **self.follower.status(), "pid": os.getpid()}

    def _finish(self) -> None:
        with self._finish_lock:
            if self._finished.is_set():
                return
            try:
                self.follower.finish()  # reads what the segments still hold; the transcript drains
            finally:
                if self._control is not None:
                    self._control.close()
                self._release()
                self._finished.set()

    def _release(self) -> None:
        if self._analysis_fd is not None:
            os.close(self._analysis_fd)
            self._analysis_fd = None


def build_recording(session: Session, source, options, bus, *, cache_dir, stages: tuple[str, ...],
                    config, append_to: Manifest | None = None, feed=None, relay=None,
                    control: bool = True) -> Recording:
    """A recorder for `source` into `session`, and a follower feeding `stages` from its files."""
    from cht.stages import StageContext, build_stages

    lifecycle = Lifecycle(session, source, options, bus, cache_dir=cache_dir, append_to=append_to, feed=feed,
                          relay=relay)
    context = StageContext(session.id, session.root, session.root, bus, lambda: lifecycle.manifest,
                           start_over=append_to is not None)
    follower = Follower(session.root, bus, build_stages(stages, context, config), lambda: lifecycle.manifest.segments)
    return Recording(lifecycle, follower, control=control)
