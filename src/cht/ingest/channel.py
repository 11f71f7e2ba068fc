"""One listen endpoint's sessions: the first client opens one and records it exactly as
`cht record` does; a client that leaves closes its segment; one that comes back within the
grace period continues the same session after a gap; later, the next client opens a new one.
One client publishes at a time; another is refused while it does.

Each session is a `Recording`: the recorder, and a follower feeding the room's stages
(keyframes, waveform, transcript through the service's one speech engine); its events go to
the service's web timeline and search index."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

from cht import events as ev
from cht.config import IngestOptions, RecordOptions
from cht.errors import ChtError
from cht.ingest.endpoints import Endpoint
from cht.ingest.feed import PushFeed, TsAligner
from cht.ingest.relay import Relay
from cht.record.sources import Source
from cht.recording import Recording, build_recording
from cht.session import Session, iso
from cht.sessionlog import as_session
from cht.stages import StageConfig

log = logging.getLogger("cht.ingest")


Opened = Callable[[Recording], None]  # a room's recording started: the service wires it to its UI and index


class Channel:
    def __init__(self, endpoint: Endpoint, data_dir: Path, options: IngestOptions, record_options: RecordOptions,
                 relay: Relay | None, on_change: Callable[[], None], *, stages: tuple[str, ...] = (),
                 stage_config: StageConfig | None = None, on_open: Opened | None = None,
                 on_close: Opened | None = None) -> None:
        self.endpoint = endpoint
        self.stages = stages
        self.stage_config = stage_config or StageConfig()
        self._on_open = on_open
        self._on_close = on_close
        self.data_dir = data_dir
        self.options = options
        self.record_options = record_options
        self.relay = relay
        self._on_change = on_change  # the service republishes the active session
        self.recording: Recording | None = None
        self.feed: PushFeed | None = None
        self.client: str | None = None
        self.since: float | None = None  # epoch s the session went live
        self._left_at: float | None = None  # monotonic s the last client left
        self._bytes_before = 0  # pushed by earlier clients of this session
        self._lock = threading.Lock()
        self._closers: list[threading.Thread] = []  # sessions finishing their transcripts
        # Recorders are started from this one long-lived thread: a child gets its death
        # signal when the *thread* that started it ends (PR_SET_PDEATHSIG).
        self._starts: queue.Queue = queue.Queue()
        threading.Thread(target=self._starter, name="cht-ingest-start", daemon=True).start()

    def _starter(self) -> None:
        while True:
            feed, client = self._starts.get()
            self._record(feed, client)

    # -- clients --

    def publish(self, client: str, resume: Callable[[], bytes] = lambda: b"") -> PushFeed | None:
        """A client has proved it is a publisher: the feed to write its stream into, or None
        while another client is publishing here."""
        with self._lock:
            if self.feed is not None and self.feed.connected:
                return None
            if self.feed is not None and self.recording is not None:
                self._bytes_before += self.feed.bytes
            feed = self.feed = PushFeed(resume)
            self.client, self._left_at = client, None
        self._starts.put((feed, client))
        return feed

    def unpublish(self, feed: PushFeed) -> None:
        """The client has gone; its recorder finishes what it was given."""
        feed.end()
        with self._lock:
            if self.feed is feed:
                self.client, self._left_at = None, time.monotonic()
        log.info("%s: client left (%d bytes)", self.endpoint.label, feed.bytes)

    def _record(self, feed: PushFeed, client: str) -> None:
        recording = self.recording
        try:
            if recording is not None and not recording.lifecycle.wait(0):
                recording.reconnect(feed)
                log.info("%s: %s is back: session %s continues after a gap", self.endpoint.label, client,
                         recording.session.id)
            else:
                self._open(feed, client)
        except ChtError as exc:
            log.warning("%s: %s: nothing recorded: %s", self.endpoint.label, client, exc)
            feed.end()
        except Exception:
            log.exception("%s: %s: could not record", self.endpoint.label, client)
            feed.end()

    def _open(self, feed: PushFeed, client: str) -> None:
        session = Session.create(self.data_dir)
        with as_session(session.id):  # the recording's threads log to its session.log alone
            self._start(session, feed, client)

    def _start(self, session: Session, feed: PushFeed, client: str) -> None:
        source = Source("push", self.endpoint.label, container=self.endpoint.container)
        relay = None
        if self.relay is not None:
            self.relay.open(session.id)
            aligner = TsAligner()
            relay = lambda data: self.relay.publish(session.id, aligner(data))  # noqa: E731
        recording = build_recording(session, source, self.record_options, ev.EventBus(),
                                    cache_dir=self.data_dir / "cache", stages=self.stages, config=self.stage_config,
                                    feed=feed, relay=relay, control=bool(self.stages))
        try:
            recording.start()
        except ChtError:
            if self.relay is not None:
                self.relay.close(session.id)
            raise
        with self._lock:
            self.recording, self.since, self._bytes_before = recording, time.time(), 0
        if self._on_open is not None:
            self._on_open(recording)
        log.info("%s: %s publishing: session %s", self.endpoint.label, client, session.id)
        self._on_change()

    # -- housekeeping --

    def tick(self) -> None:
        """End the session once its client has been gone longer than the grace period, or
        when it ended by itself (disk full). Its transcript drains in a thread of its own:
        the other rooms' housekeeping does not wait for it."""
        with self._lock:
            recording = self.recording
            gone = self._left_at is not None and time.monotonic() - self._left_at > self.options.grace_s
        if recording is None:
            return
        if gone:
            reason = f"no client for {self.options.grace_s:g} s"
        elif recording.lifecycle.wait(0):
            reason = recording.manifest.reason
        else:
            return
        recording = self._detach()
        if recording is not None:
            closer = threading.Thread(target=self._finish, args=(recording, reason), name="cht-ingest-close",
                                      daemon=True)
            self._closers = [c for c in self._closers if c.is_alive()] + [closer]
            closer.start()

    def close(self, reason: str) -> None:
        """End the session now (the service stops), and wait for the ones already ending."""
        recording = self._detach()
        if recording is not None:
            self._finish(recording, reason)
        for closer in self._closers:
            closer.join()

    def _detach(self) -> Recording | None:
        """The channel lets go of its session: the next client opens a new one."""
        with self._lock:
            recording, self.recording = self.recording, None
            feed, self.feed = self.feed, None
            self.client, self._left_at, self.since = None, None, None
        if feed is not None:
            feed.end()
        return recording

    def _finish(self, recording: Recording, reason: str) -> None:
        with as_session(recording.session.id):
            self._close(recording, reason)

    def _close(self, recording: Recording, reason: str) -> None:
        manifest = recording.stop(reason)
        if self.relay is not None:
            self.relay.close(recording.session.id)
        log.info("%s: session %s closed (%s): %d segment(s), %.1f s", self.endpoint.label, manifest.id, reason,
                 len(manifest.segments), manifest.duration)
        if self._on_close is not None:
            self._on_close(recording)
        self._on_change()

    # -- status --

    @property
    def session(self) -> Session | None:
        recording = self.recording
        return recording.session if recording is not None else None

    def status(self) -> dict:
        with self._lock:
            recording, feed, client = self.recording, self.feed, self.client
            pushed = self._bytes_before + (feed.bytes if feed is not None else 0)
            since = self.since
        state = "idle" if recording is None else ("live" if client else "waiting")
        analysis = recording.follower.status() if recording else {}
        return {"listen": self.endpoint.label, "state": state, "client": client,
                "session": recording.session.id if recording else None,
                "session_dir": str(recording.session.root) if recording else None,
                "duration": round(recording.manifest.duration, 3) if recording else 0.0,
                "transcript_lag": analysis.get("transcript_lag"),
                "bytes": pushed if recording else 0, "recorded_bytes": recording.lifecycle.bytes if recording else 0,
                "since": iso(since) if since else None,
                "viewers": self.relay.viewers(recording.session.id) if recording and self.relay else 0}
