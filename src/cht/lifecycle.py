"""The life of one recording: start, watchdog, live tick, rotation, go-live, stop.

It only records: what the recording shows and says is derived by a `Follower` reading the
files it writes (in this process for `cht record`, or in another).

It owns the recorder runs and the global clock. Each run is an ffmpeg process writing
numbered segments; when one dies, the watchdog notices within `watchdog_s` and starts the
next run into the next segment, and the outage becomes a gap. Everything that happens is
published as a typed event on the bus; nothing here knows about a terminal or a browser.

The global clock: global time 0 is the session's first media. A live source's run starts at
the wall-clock distance of its first media from that origin (dated from when its fragments
land, see `Run.look`), so the time a listener waits for its next client is a gap too. For a file played at real pace, the file *is* the clock: a new run seeks
to where a live stream would be by now (its next keyframe); with `--fast` it resumes where
the last run ended.
"""

from __future__ import annotations

import bisect
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from cht import events as ev
from cht.config import RecordOptions
from cht.errors import SourceError
from cht.media.ffmpeg import keyframe_times, recorder_args
from cht.record.demo import generator_args
from cht.record.feed import Feed, PipeFeed
from cht.record.recorder import Recorder
from cht.record.sources import Source
from cht.record.tracker import SegmentTracker
from cht.session import (
    META_GLOBAL_START,
    META_ORIGIN,
    META_RUN,
    META_SOURCE,
    META_STARTED_AT,
    Manifest,
    SegmentFacts,
    Session,
    SessionState,
    close_segment,
    derive,
    epoch,
    segment_facts,
    segment_index,
)
from cht.sessionlog import close_session_log, open_session_log, spawn

Relay = Callable[[bytes], None]

log = logging.getLogger("cht.lifecycle")

END_TOLERANCE_S = 0.1  # seconds: a file run that would start this close to the end has ended
RESERVE_BYTES = 1 << 20  # kept free for the final manifest when the disk fills up
MAX_QUICK_FAILURES = 3  # a file run that dies this often without media in a row ends the session
DATING_S = 2.0  # seconds a new run's landing fragments are watched before its start is fixed


class Run:
    """One recorder process, the first segment index it writes and the metadata it stamps."""

    def __init__(self, number: int, first_index: int, metadata: dict[str, str]) -> None:
        self.number = number
        self.first_index = first_index
        self.metadata = metadata
        self.first_media_at: float | None = None  # epoch s its first media came, once dated for good
        self.earliest: float | None = None  # the tightest bound on that so far
        self._watched_since: float | None = None
        self.recorder: Recorder | None = None
        self.handled = False  # its exit has been dealt with

    def look(self, landed: float, now: float, ended: bool) -> bool:
        """One look at the run's first segment: `landed` s of media in complete fragments at
        epoch `now`. True when this look dates the run for good.

        Media that has landed by `now` and lasts `landed` s began by `now - landed` (a live
        source sends no faster than real time), so each look bounds the start and the tightest
        bound is kept. Landing lags arrival: a listener probes its input for up to 5 s and then
        writes it all at once, and one look in the middle of that write saw half of it (CI,
        2026-11-30: a 3 s outage came out as 0.15 s). So a run is watched for `DATING_S`, at
        each watchdog wake, or to its end."""
        bound = now - landed
        self.earliest = bound if self.earliest is None else min(self.earliest, bound)
        if self._watched_since is None:
            self._watched_since = now
        if ended or now - self._watched_since >= DATING_S:
            self.first_media_at = round(self.earliest, 3)
            return True
        return False

    @property
    def being_dated(self) -> bool:
        return self.earliest is not None and self.first_media_at is None


class Lifecycle:
    def __init__(
        self,
        session: Session,
        source: Source,
        options: RecordOptions,
        bus: ev.EventBus,
        *,
        cache_dir: Path,
        append_to: Manifest | None = None,
        feed: Feed | None = None,
        relay: Relay | None = None,
    ) -> None:
        self.session = session
        self.source = source
        self.options = options
        self.bus = bus
        self._cache_dir = cache_dir
        self._append_to = append_to
        self._tracker = SegmentTracker(session.segments_dir)
        self._feed = feed  # a pushed stream's bytes; the demo makes its own generator
        self._relay = relay  # gets the live stream as MPEG-TS from every run
        self._runs: list[Run] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_handler: logging.Handler | None = None
        self._keyframes: list[float] | None = None
        self._quick_failures = 0
        self._manifest_saved_at = 0.0
        self._went_live = False
        self._manifest_failed = False  # the last manifest write failed (is the disk read-only?)
        self._last_index = -1
        self._file_started_wall = 0.0  # epoch s when a file source started playing
        self._file_origin = 0.0  # global s where a file source's own time 0 lies
        self.restarts = 0
        self.bytes = 0
        self.manifest = Manifest(id=session.id, source=source_label(source), state="recording")

    # -- public --

    def start(self) -> None:
        """Start recording; raise SourceError (leaving nothing behind) if no media comes."""
        self.session.lock()
        self._reserve_space()
        self._attach_log()
        if self._append_to is not None:
            self._last_index = max((segment_index(Path(s.file)) for s in self._append_to.segments), default=-1)
            self._refresh()
        if self.source.stdin_fed and self._feed is None:
            self._feed = PipeFeed(generator_args(self._cache_dir), self.session.recorder_log_path)
            self._feed.start()
        try:
            self._spawn()
            self._wait_for_media()
        except SourceError:
            self._abort_start()
            raise
        self.bus.publish(ev.SessionStarted(self.session.id, self.manifest.source, str(self.session.root)))
        self._refresh()
        self._save_manifest()
        self._thread = spawn(self._control_loop, name="cht-lifecycle")

    def request_stop(self) -> None:
        """Ask for a stop from a signal handler; `stop()` then does the work."""
        self._stopping.set()

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    def stop(self, reason: str = "stopped by user") -> Manifest:
        """Stop gracefully: the recorder finishes its last fragment, the manifest is final."""
        self._stopping.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join()
        self._shutdown("stopped", reason)
        return self.manifest

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the session has ended (end of source, disk full, stop)."""
        return self._finished.wait(timeout)

    @property
    def recorder_pid(self) -> int | None:
        run = self._runs[-1] if self._runs else None
        return run.recorder.pid if run and run.recorder else None

    def reconnect(self, feed: Feed) -> None:
        """A pushed stream's client is back: the next run records it into a new segment,
        after the gap since the last one."""
        with self._lock:
            if self._finished.is_set():
                raise SourceError("the session has ended")
            run = self._runs[-1]
            self._feed = feed
            if run.recorder.alive():  # still writing what the last client sent
                run.recorder.stop(timeout=self.options.stop_timeout_s)
            if not run.handled:
                run.handled = True
                self._finalize_run(run)
            self._refresh()  # the last run dated for good: the next is placed after it
            self._restart("client reconnected")

    def status(self) -> dict:
        return {"session": self.session.id, "state": self.manifest.state, "duration": self.manifest.duration,
                "segment": self._last_index, "restarts": self.restarts, "bytes": self.bytes}

    # -- runs --

    def _origin(self) -> float | None:
        """Epoch seconds of global time 0, once the session has media."""
        if not self.manifest.segments:
            return None
        first = self.manifest.segments[0]
        return round(epoch(first.started_at) - first.global_start, 3)

    def _spawn(self, reason: str = "start") -> bool:
        """Start the next recorder run; False when a file source has nothing left to play."""
        now = round(time.time(), 3)
        metadata = {META_RUN: str(self._next_run_number()), META_STARTED_AT: f"{now:.3f}",
                    META_SOURCE: self.manifest.source}
        offset, not_before = 0.0, 0.0
        if self.source.kind == "file":
            if not self._runs:
                origin = self._origin()  # appending: the pause since the last segment is a gap
                self._file_origin = 0.0 if origin is None else max(self.manifest.duration, now - origin)
                self._file_started_wall = now
            offset = self._file_resume_point(now, self.manifest.duration)
            if offset is None:
                return False
            metadata[META_GLOBAL_START] = f"{self._file_origin + offset:.3f}"
            if not self.options.fast:
                # The file is the clock: its keyframe plays when a live stream would reach it.
                # Started at once, each restart ran up to a keyframe interval ahead of the wall,
                # and the lead grew from kill to kill (+3 s after five in the kill loop).
                not_before = self._file_started_wall + offset
        elif (origin := self._origin()) is not None:
            metadata[META_ORIGIN] = f"{origin:.3f}"
        run = Run(int(metadata[META_RUN]), self.session.next_segment_index(), metadata)
        args = recorder_args(
            self.source.input_args(offset=offset, paced=not self.options.fast),
            self.source.map_args(),
            self.source.codec_args,
            self.session.segments_dir,
            start_number=run.first_index,
            metadata=metadata,
            max_segment_s=self.options.max_segment_s,
            fragment_s=self.options.fragment_s,
            relay=self._relay is not None,
        )
        run.recorder = Recorder(args, run=run.number, log_path=self.session.recorder_log_path,
                                stdin_fed=self.source.stdin_fed, stdout_sink=self._relay, not_before=not_before)
        log.info("starting run %d (%s) into segment %d", run.number, reason, run.first_index)
        run.recorder.start()
        if self._feed is not None and run.recorder.stdin is not None:
            self._feed.attach(run.recorder.stdin)
        self._runs.append(run)
        return True

    def _next_run_number(self) -> int:
        if self._runs:
            return self._runs[-1].number + 1
        return max((s.run + 1 for s in self.manifest.segments), default=0)

    def _file_resume_point(self, now: float, prev_end: float) -> float | None:
        """Where in the file the next run starts (file seconds); None when it has ended.

        Like a viewer joining a live stream, a restarted run gets the first keyframe at or
        after the live position, so the outage is a gap; with --fast nothing is live and it
        resumes at the first keyframe after what was recorded.
        """
        if not self._runs:
            return 0.0
        done = max(0.0, prev_end - self._file_origin)
        target = done if self.options.fast else max(done, now - self._file_started_wall)
        if self._keyframes is None:
            self._keyframes = keyframe_times(Path(self.source.spec))
        point = target
        if self._keyframes:
            i = bisect.bisect_left(self._keyframes, target - 1e-6)
            point = self._keyframes[i] if i < len(self._keyframes) else float("inf")
        media = self.source.media
        if media is not None and media.duration and point >= media.duration - END_TOLERANCE_S:
            return None
        return point

    def _wait_for_media(self) -> None:
        """Block until the first fragment lands; a listener waits for its client instead."""
        run = self._runs[-1]
        deadline = time.monotonic() + self.options.first_media_timeout_s
        while not self._has_media():
            if not run.recorder.alive():
                if self._has_media():
                    return
                raise SourceError(f"cannot record {self.manifest.source}: {run.recorder.last_error()}")
            if self.source.kind != "listen" and time.monotonic() > deadline:
                raise SourceError(
                    f"no media from {self.manifest.source} after {self.options.first_media_timeout_s:g} s: "
                    "check that the source is playing"
                )
            if self._stopping.wait(0.05):
                # The first fragment may land between two polls (a long GOP writes seconds at
                # once): let the recorder flush, then look again, so a stop loses nothing.
                run.recorder.stop(timeout=self.options.stop_timeout_s)
                if self._has_media():
                    return
                raise SourceError(f"stopped before any media came from {self.manifest.source}: nothing was recorded")

    def _has_media(self) -> bool:
        return any(scan.fragments for _, scan in self._tracker.poll())

    def _abort_start(self) -> None:
        self._release_reserve()
        run = self._runs[-1] if self._runs else None
        if run and run.recorder:
            run.recorder.stop(timeout=2)
        if self._feed:
            self._feed.stop()
        self._detach_log()
        self.session.unlock()
        if self._append_to is None:
            self.session.remove()
        else:
            for path in self.session.segment_files()[len(self._append_to.segments):]:
                path.unlink(missing_ok=True)

    # -- the control loop: watchdog and tick --

    def _control_loop(self) -> None:
        next_tick = time.monotonic()
        while not self._stopping.wait(self.options.watchdog_s) and not self._finished.is_set():
            try:
                with self._lock:
                    run = self._runs[-1]
                    if not self._finished.is_set() and not run.handled and not run.recorder.alive():
                        run.handled = True
                        self._on_recorder_exit(run)
                if time.monotonic() >= next_tick:
                    next_tick = max(next_tick + self.options.tick_s, time.monotonic())
                    self._tick()
                elif self._runs[-1].being_dated:
                    with self._lock:
                        self._refresh()  # look at a new run's landing fragments at each wake
            except Exception:  # the watchdog must outlive any bug in one tick
                log.exception("lifecycle tick failed")

    def _tick(self) -> None:
        with self._lock:
            if self._finished.is_set():
                return
            self._refresh()
            duration = self.manifest.duration
            if not self._went_live and duration > 0:
                self._went_live = True
                self.bus.publish(ev.WentLive(duration))
            self.bus.publish(ev.DurationChanged(duration, self._last_index, self.bytes))
            self.bus.publish(ev.LiveTick(duration))
            self._sync_media()
            if time.monotonic() - self._manifest_saved_at >= self.options.manifest_every_s:
                self._save_manifest()  # `cht serve` and `cht info` in other processes see it grow
            if self._manifest_failed and self._stop_if_unwritable():
                return
            free = _free_bytes(self.session.root)
            if free is not None and free < self.options.min_free_bytes:
                log.warning("only %d bytes free in the data dir: stopping", free)
                self._stopping.set()
                self._shutdown("stopped", f"disk full: less than {self.options.min_free_bytes} bytes free")

    def _on_recorder_exit(self, run: Run) -> None:
        code = run.recorder.returncode
        error = run.recorder.last_error()
        produced = self._finalize_run(run)
        self._refresh()
        if code == 0:
            log.info("run %d ended (exit code 0)", run.number)
        else:
            log.warning("run %d ended (exit code %s): %s", run.number, code, error)
        if "No space left" in run.recorder.output():
            self._shutdown("stopped", "disk full: the data dir has no space left")
            return
        if self._stop_if_unwritable():  # a read-only disk kills the recorder too
            return
        if code == 0 and self.source.finite:
            self._shutdown("stopped", "end of source")
            return
        if self.source.kind == "push" and not self._feed.connected:
            log.info("the client has gone: waiting for it to come back")
            self._save_manifest()  # the closed segment, for readers in other processes
            return  # `reconnect` starts the next run
        self._quick_failures = 0 if produced else self._quick_failures + 1
        if self.source.kind == "file" and self._quick_failures >= MAX_QUICK_FAILURES:
            self._shutdown("crashed", f"the recorder keeps failing: {error}")
            return
        if self._quick_failures and self._stopping.wait(min(10.0, 0.5 * 2 ** (self._quick_failures - 1))):
            return
        if self._feed:
            self._feed.detach()
        reason = "client disconnected" if self.source.kind == "listen" and code == 0 else f"recorder exited ({code})"
        if not self._restart(reason):
            self._shutdown("stopped", "end of source")

    def _restart(self, reason: str) -> bool:
        """The next run, announced; False when a file source has nothing left to play."""
        if not self._spawn(reason):
            return False
        self.restarts += 1
        self.bus.publish(ev.RecorderRestarted(self._runs[-1].first_index, reason, self.restarts))
        self._refresh()
        self._save_manifest()
        return True

    def _finalize_run(self, run: Run) -> bool:
        """Cut the torn last fragment of a dead run; drop files it left empty. True if it recorded."""
        produced = False
        for path in self.session.segment_files():
            if segment_index(path) < run.first_index:
                continue
            if close_segment(path):
                produced = True
            else:
                self._tracker.forget(path)
        return produced

    # -- state --

    def _refresh(self) -> None:
        """Recompute segments and gaps from what the files hold now."""
        facts = self._appended_facts()
        total = 0
        for index, scan in self._tracker.poll():
            total += scan.complete_bytes
            run = self._run_for(index)
            if run is None:
                continue
            if run.first_media_at is None and index == run.first_index and scan.fragments:
                self._look_at_first_media(run, scan.duration)
            if run.first_media_at is None and META_ORIGIN in run.metadata:
                continue  # a later live run joins the timeline once its start is dated
            first_media_at = run.earliest if run.first_media_at is None else run.first_media_at
            fact = segment_facts(str(scan.path.relative_to(self.session.root)), index, scan, run.metadata,
                                 first_media_at)
            if fact is not None:
                facts.append(fact)
        self.bytes = total
        segments, gaps = derive(facts)
        # a file a repair set aside (a run killed at its rotation) is named as `cht rebuild` names it
        self.manifest.segments = segments
        self.manifest.gaps = sorted(gaps + self.session._set_aside_gaps(segments), key=lambda g: g.start)
        if self.manifest.segments:
            self.manifest.started_at = self.manifest.segments[0].started_at
        newest = max((f.index for f in facts if f.duration > 0), default=-1)
        if newest > self._last_index:
            self._last_index = newest
            seg = self.manifest.segments[-1]
            self.bus.publish(ev.SegmentStarted(newest, seg.file, seg.global_start))
            if self._went_live or len(self.manifest.segments) > 1:
                self._save_manifest()

    def _look_at_first_media(self, run: Run, seconds_landed: float) -> None:
        """Date the run by what has landed now; note the date once it is for good."""
        if not run.look(seconds_landed, time.time(), ended=not run.recorder.alive()):
            return
        try:
            self.session.write_run_note(run.number, run.first_media_at)
        except OSError as exc:
            log.warning("could not note run %d's start: %s", run.number, exc)

    def _appended_facts(self) -> list[SegmentFacts]:
        """The segments of the session being continued, as they are."""
        if self._append_to is None:
            return []
        return [
            SegmentFacts(seg.file, segment_index(Path(seg.file)), seg.run, seg.global_start, None,
                         epoch(seg.started_at), seg.duration, seg.bytes)
            for seg in self._append_to.segments
        ]

    def _run_for(self, index: int) -> Run | None:
        found = None
        for run in self._runs:
            if index >= run.first_index:
                found = run
        return found

    def _save_manifest(self) -> None:
        self._manifest_saved_at = time.monotonic()
        try:
            self.session.save_manifest(self.manifest)
            self._manifest_failed = False
        except OSError as exc:
            self._manifest_failed = True
            log.error("could not write the manifest: %s", exc)
            self.bus.publish(ev.Warning(f"could not write the manifest: {exc.strerror}"))
            return
        self.bus.publish(ev.ManifestUpdated(len(self.manifest.segments), self.manifest.duration,
                                            self.manifest.state))

    def _sync_media(self) -> None:
        """Push the newest segments (the growing one, and the one that may have just closed) and
        their dir to the disk, every tick: ffmpeg never fsyncs, and a disk that fails and goes
        read-only (ext4 errors=remount-ro), or a power cut, drops every byte not yet written back:
        seen, a whole session's segments gone after an abort at 14 s. One tick's media is at stake."""
        for segment in self.manifest.segments[-2:]:  # as `_refresh` just found them: no listing here
            _fsync(self.session.root / segment.file)
        _fsync(self.session.segments_dir)

    def _stop_if_unwritable(self) -> bool:
        """The data dir turned read-only (a failing disk remounted, a permission changed): stop
        with that reason instead of restarting a recorder that cannot write, and say so. The
        media written stays (each fragment is whole); the manifest on disk may be behind it:
        `cht rebuild`."""
        problem = _write_problem(self.session.root)
        if problem is None:
            return False
        self._stopping.set()
        self._shutdown("stopped", f"data dir not writable: {problem}; what was recorded is kept: once it is "
                                  f"writable again, run `cht rebuild {self.session.id}`")
        return True

    def _shutdown(self, state: SessionState, reason: str) -> None:
        with self._lock:
            if self._finished.is_set():
                return
            self._release_reserve()  # room for the last manifest, index and log lines on a full disk
            run = self._runs[-1] if self._runs else None
            if run and run.recorder and not run.handled:
                run.handled = True
                run.recorder.stop(timeout=self.options.stop_timeout_s)
                try:
                    self._finalize_run(run)
                except OSError as exc:  # read-only: the torn fragment stays; readers skip it, `cht rebuild` cuts it
                    log.warning("could not close the last segment: %s", exc)
            if self._feed:
                self._feed.stop()
            self._refresh()
            self.manifest.state = state
            self.manifest.reason = reason
            self._save_manifest()
            log.info("session %s %s: %s", self.session.id, state, reason)
            self.bus.publish(ev.SessionStopped(state, reason, self.manifest.duration))
            self._detach_log()
            self.session.unlock()
            self._finished.set()

    def _reserve_space(self) -> None:
        """Set aside a little space that a full disk cannot take: released on shutdown so the
        final manifest and logs can still be written."""
        try:
            with open(self._reserve_path, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
        except OSError:
            self._reserve_path.unlink(missing_ok=True)

    def _release_reserve(self) -> None:
        try:
            self._reserve_path.unlink(missing_ok=True)
        except OSError as exc:  # a read-only disk: nothing to release, and nothing to write either
            log.warning("could not release the space reserve: %s", exc)

    @property
    def _reserve_path(self) -> Path:
        return self.session.root / ".reserve"

    def _attach_log(self) -> None:
        self._log_handler = open_session_log(self.session.log_path, self.session.id)

    def _detach_log(self) -> None:
        close_session_log(self._log_handler)
        self._log_handler = None


def source_label(source: Source) -> str:
    """The source as shown and stored: a stream key or password never leaves the process."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in source.spec:
        return source.spec
    parts = urlsplit(source.spec)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    path = parts.path
    if parts.scheme == "rtmp":
        pieces = path.rstrip("/").split("/")
        if len(pieces) > 2:
            pieces[-1] = "***"
        path = "/".join(pieces)
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # read-only or failing: what the tick reports as not writable
        pass
    finally:
        os.close(fd)


def _write_problem(path: Path) -> str | None:
    """Why a new file cannot be made in `path` (read-only file system, permission denied), or None."""
    probe = path / ".write-probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
