"""One listen endpoint's sessions: the first client opens one and records it exactly as
`cht record` does; a client that leaves closes its segment; one that comes back within the
grace period continues the same session after a gap; later, the next client opens a new one.
One client publishes at a time; another is refused while it does."""

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
from cht.lifecycle import Lifecycle
from cht.record.sources import Source
from cht.session import Session, iso

log = logging.getLogger("cht.ingest")


class Channel:
    def __init__(self, endpoint: Endpoint, data_dir: Path, options: IngestOptions, record_options: RecordOptions,
                 relay: Relay | None, on_change: Callable[[], None]) -> None:
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.options = options
        self.record_options = record_options
        self.relay = relay
        self._on_change = on_change  # the service republishes the active session
        self.lifecycle: Lifecycle | None = None
        self.feed: PushFeed | None = None
        self.client: str | None = None
        self.since: float | None = None  # epoch s the session went live
        self._left_at: float | None = None  # monotonic s the last client left
        self._bytes_before = 0  # pushed by earlier clients of this session
        self._lock = threading.Lock()
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
            if self.feed is not None and self.lifecycle is not None:
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
        lifecycle = self.lifecycle
        try:
            if lifecycle is not None and not lifecycle.wait(0):
                lifecycle.reconnect(feed)
                log.info("%s: %s is back: session %s continues after a gap", self.endpoint.label, client,
                         lifecycle.session.id)
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
        source = Source("push", self.endpoint.label, container=self.endpoint.container)
        relay = None
        if self.relay is not None:
            self.relay.open(session.id)
            aligner = TsAligner()
            relay = lambda data: self.relay.publish(session.id, aligner(data))  # noqa: E731
        lifecycle = Lifecycle(session, source, self.record_options, ev.EventBus(), cache_dir=self.data_dir / "cache",
                              analyze=False, feed=feed, relay=relay, control=False)
        try:
            lifecycle.start()
        except ChtError:
            if self.relay is not None:
                self.relay.close(session.id)
            raise
        with self._lock:
            self.lifecycle, self.since, self._bytes_before = lifecycle, time.time(), 0
        log.info("%s: %s publishing: session %s", self.endpoint.label, client, session.id)
        self._on_change()

    # -- housekeeping --

    def tick(self) -> None:
        """End the session once its client has been gone longer than the grace period, or
        when it ended by itself (disk full)."""
        with self._lock:
            lifecycle = self.lifecycle
            gone = self._left_at is not None and time.monotonic() - self._left_at > self.options.grace_s
        if lifecycle is None:
            return
        if gone:
            self.close(f"no client for {self.options.grace_s:g} s")
        elif lifecycle.wait(0):
            self.close(lifecycle.manifest.reason)

    def close(self, reason: str) -> None:
        with self._lock:
            lifecycle, self.lifecycle = self.lifecycle, None
            feed, self.feed = self.feed, None
            self.client, self._left_at, self.since = None, None, None
        if feed is not None:
            feed.end()
        if lifecycle is None:
            return
        manifest = lifecycle.stop(reason)
        if self.relay is not None:
            self.relay.close(lifecycle.session.id)
        log.info("%s: session %s closed (%s): %d segment(s), %.1f s", self.endpoint.label, manifest.id, reason,
                 len(manifest.segments), manifest.duration)
        self._on_change()

    # -- status --

    @property
    def session(self) -> Session | None:
        return self.lifecycle.session if self.lifecycle is not None else None

    def status(self) -> dict:
        with self._lock:
            lifecycle, feed, client = self.lifecycle, self.feed, self.client
            pushed = self._bytes_before + (feed.bytes if feed is not None else 0)
            since = self.since
        state = "idle" if lifecycle is None else ("live" if client else "waiting")
        return {"listen": self.endpoint.label, "state": state, "client": client,
                "session": lifecycle.session.id if lifecycle else None,
                "session_dir": str(lifecycle.session.root) if lifecycle else None,
                "bytes": pushed if lifecycle else 0, "recorded_bytes": lifecycle.bytes if lifecycle else 0,
                "since": iso(since) if since else None,
                "viewers": self.relay.viewers(lifecycle.session.id) if lifecycle and self.relay else 0}
