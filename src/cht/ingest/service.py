"""`cht ingest`: a long-running service that accepts pushed streams and records them.

One per data dir (`ingest.lock`, holding its pid). While it runs it publishes the session
being recorded in `<data_dir>/active-session` (written atomically: the session dir) and
answers `{"cmd": "status"}` on `<data_dir>/ingest.sock`; that answer is the proof it is
alive, so a marker whose socket does not answer was left by a service that died.

Every room is analysed here by default (keyframes, waveform, transcript), all transcripts
through one speech engine: one model in memory however many rooms record. Each room's live
session is offered to the web timeline (`live`) and its final lines to the search index.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from cht.config import IngestOptions, RecordOptions
from cht.index.live import follow as index_lines_of
from cht.index.search import SearchIndex
from cht.control import ControlServer
from cht.errors import SessionError
from cht.ingest.channel import Channel
from cht.ingest.endpoints import Endpoint
from cht.ingest.listeners import SrtListener, TcpListener
from cht.ingest.relay import Relay
from cht.recording import Recording
from cht.session import Session, atomic_write_text, iso, lock_holder, take_lock
from cht.stages import StageConfig

log = logging.getLogger("cht.ingest")

MARKER = "active-session"
SOCKET = "ingest.sock"
LOCK = "ingest.lock"
LOG = "ingest.log"
TICK_S = 0.5


class IngestService:
    def __init__(self, data_dir: Path, endpoints: list[Endpoint], *, options: IngestOptions | None = None,
                 record_options: RecordOptions | None = None, relay: Relay | None = None,
                 stages: tuple[str, ...] = (), stage_config: StageConfig | None = None,
                 live: dict | None = None, retention=None, on_segment: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.retention = retention  # cht.prune.Retention: old sessions deleted hourly
        self.on_segment = on_segment  # argv run on each finished segment (cht.hooks)
        self._hooks: dict[str, object] = {}  # session id -> its SegmentHook
        self.stage_config = stage_config or StageConfig()
        self.live = live  # the web UI's live sessions (id -> LiveSession), when it serves
        self._index: SearchIndex | None = None
        self.options = options or IngestOptions()
        self.relay = relay
        self.started_at = time.time()
        self._lock_fd: int | None = None
        self._marker_lock = threading.Lock()
        self._stop = threading.Event()
        self._control = ControlServer(data_dir / SOCKET, {"status": self.status})
        self.channels = [Channel(e, data_dir, self.options, record_options or RecordOptions(), relay,
                                 self._publish_active, stages=stages, stage_config=self.stage_config,
                                 on_open=self._room_opened, on_close=self._room_closed) for e in endpoints]
        self._listeners = [SrtListener(c.endpoint, c, data_dir / LOG) if c.endpoint.scheme == "srt"
                           else TcpListener(c.endpoint, c, self.options) for c in self.channels]

    # -- start / stop --

    def claim(self) -> None:
        """Take the data dir (SessionError if another service has it) before anything costly,
        such as loading the speech model, is done."""
        if self._lock_fd is not None:
            return
        try:
            Session.sessions_dir(self.data_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SessionError(f"data dir {self.data_dir} is not usable ({exc.strerror}): "
                               "choose another with --data-dir") from None
        self._take_lock()

    def analyse(self, stages: tuple[str, ...], config: StageConfig) -> None:
        """Every room from now on is analysed by these stages (the engine is shared)."""
        self.stage_config = config
        for channel in self.channels:
            channel.stages, channel.stage_config = stages, config

    def start(self) -> None:
        """Take the data dir, clean what a dead service left, then listen; a SourceError
        (port busy) or SessionError (another service) leaves nothing behind."""
        self.claim()
        try:
            self._clean_stale()
            for listener in self._listeners:
                listener.bind()
            if self.relay is not None:
                self.relay.start()
            if not self._control.start():
                raise SessionError(f"cannot create {self.data_dir / SOCKET}: use a shorter --data-dir path")
        except BaseException:
            for listener in self._listeners:
                listener.close()
            if self.relay is not None:
                self.relay.stop()
            self._release_lock()
            raise
        for listener in self._listeners:
            listener.start()
        threading.Thread(target=self._housekeeping, name="cht-ingest-tick", daemon=True).start()
        if self.retention is not None:
            self.retention.start()
        log.info("ingest service pid %d on %s", os.getpid(), ", ".join(c.endpoint.label for c in self.channels))

    def release(self) -> None:
        """Give the data dir back without having started (start-up failed after `claim`)."""
        self._release_lock()

    def stop(self) -> None:
        """Stop listening, finish every recording (each writes its final manifest), clean up."""
        self._stop.set()
        if self.retention is not None:
            self.retention.stop()
        for listener in self._listeners:
            listener.close()
        closing = [threading.Thread(target=c.close, args=("the ingest service stopped",), daemon=True)
                   for c in self.channels]  # every room drains its transcript at once, through one engine
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()
        if self._index is not None:
            self._index.close()
        if self.relay is not None:
            self.relay.stop()
        self._control.close()
        (self.data_dir / MARKER).unlink(missing_ok=True)
        self._release_lock()

    def _housekeeping(self) -> None:
        while not self._stop.wait(TICK_S):
            for channel in self.channels:
                try:
                    channel.tick()
                except Exception:
                    log.exception("%s: housekeeping failed", channel.endpoint.label)

    # -- one service per data dir --

    def _take_lock(self) -> None:
        path = self.data_dir / LOCK
        self._lock_fd = take_lock(path)
        if self._lock_fd is None:
            raise SessionError(f"an ingest service (pid {lock_holder(path)}) already serves {self.data_dir}: "
                               "stop it first, or use another --data-dir")

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _clean_stale(self) -> None:
        """A marker or socket found while we hold the lock was left by a service that died."""
        message = clear_stale(self.data_dir)
        if message:
            log.warning("%s", message)

    # -- rooms --

    def _room_opened(self, recording: Recording) -> None:
        """A room went live: its final lines go to the search index, its page to the web UI."""
        index = self._search_index()
        if index is not None:
            recording.bus.subscribe(index_lines_of(index, recording.session.id,
                                                   lambda: recording.manifest.started_at, recording.manifest.source))
        if self.live is not None:
            from cht.web.app import LiveSession

            self.live[recording.session.id] = LiveSession(recording.bus, recording.capture,
                                                          lambda: recording.manifest, recording.status)
        if self.on_segment is not None:
            from cht.hooks import SegmentHook

            hook = self._hooks[recording.session.id] = SegmentHook(self.on_segment, recording.session,
                                                                   lambda: recording.manifest)
            recording.bus.subscribe(hook)
            hook.catch_up()

    def _room_closed(self, recording: Recording) -> None:
        if self.live is not None:
            self.live.pop(recording.session.id, None)
        hook = self._hooks.pop(recording.session.id, None)
        if hook is not None:
            hook.close()  # the last segments are handed over before the service may exit

    def _search_index(self) -> SearchIndex | None:
        if self._index is None:
            try:
                self._index = SearchIndex(self.data_dir)
            except Exception as exc:  # derived: rooms record without it (`cht reindex` later)
                log.warning("search index unavailable (%s): run `cht reindex` later", exc)
        return self._index

    # -- what the service publishes --

    def _publish_active(self) -> None:
        """Point the marker at the session that went live last (or remove it)."""
        with self._marker_lock:
            live = [c for c in self.channels if c.session is not None and c.since is not None]
            marker = self.data_dir / MARKER
            if not live:
                marker.unlink(missing_ok=True)
                return
            newest = max(live, key=lambda c: c.since)
            atomic_write_text(marker, str(newest.session.root) + "\n")

    def status(self, _request: dict | None = None) -> dict:
        channels = [c.status() for c in self.channels]
        target = read_marker(self.data_dir)
        active = next((c for c in channels if target and c["session"] == target.id), None)
        return {
            "pid": os.getpid(),
            "session": active["session"] if active else None,
            "session_dir": active["session_dir"] if active else None,
            "state": active["state"] if active else "idle",
            "clients": sum(1 for c in channels if c["client"]),
            "bytes": sum(c["bytes"] for c in channels),
            "since": active["since"] if active else iso(self.started_at),
            "relay": self.relay.url() if self.relay else None,
            "listeners": [{"listen": c.endpoint.label,
                           "accepting": getattr(listener, "acceptor", listener).accepting}
                          for c, listener in zip(self.channels, self._listeners)],
            "relay_accepting": self.relay.acceptor.accepting if self.relay else None,
            "models_loaded": 1 if self.stage_config.engine is not None else 0,
            "speech_sessions": self.stage_config.engine.sessions if self.stage_config.engine is not None else 0,
            "channels": channels,
        }


def clear_stale(data_dir: Path) -> str | None:
    """Remove the marker and socket of a service that died, and give the session it was
    recording a manifest rebuilt from its files (shown as crashed). Call it only when no
    service holds the lock. Returns what was done, for a log line."""
    target = read_marker(data_dir)
    found = (data_dir / MARKER).exists()
    # The socket goes first: the marker's absence is what waiters read as "cleaned up".
    (data_dir / SOCKET).unlink(missing_ok=True)
    (data_dir / MARKER).unlink(missing_ok=True)
    if not found:
        return None
    message = f"removed a stale {MARKER} marker (no ingest service answers on {SOCKET})"
    if target is not None and not target.is_recording():
        try:
            manifest = target.rebuild()
            message += f"; session {target.id} was left {manifest.state}: manifest rebuilt from its segment files"
        except Exception as exc:  # a damaged session must not stop the cleanup
            message += f"; session {target.id} could not be rebuilt ({exc}): run `cht rebuild {target.id}`"
    return message


def read_marker(data_dir: Path) -> Session | None:
    """The session the marker names, if it is a session dir of this data dir (the file's
    content is never trusted as a path beyond that)."""
    try:
        text = (data_dir / MARKER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    path = Path(text)
    base = Session.sessions_dir(data_dir)
    try:
        if path.parent.resolve() != base.resolve() or not path.is_dir():
            return None
        return Session.open(data_dir, path.name)
    except (OSError, SessionError):
        return None
