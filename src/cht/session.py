"""Sessions on disk and their manifest.

Layout (`<data_dir>/sessions/<id>/`): `manifest.json`, `segments/seg_00000.mp4 …`,
`session.log` (cht's own log), `recorder.log` (ffmpeg's stderr), and later stages' `frames/`,
`audio/`, `transcript.jsonl`.

The manifest is derived: every segment file carries in its own metadata the recorder run it
came from and how that run sits on the global clock; `segments/run_NNNN.json` notes when a
run's first media arrived by the wall clock (a listener may wait long for its client). `derive()`
turns those facts plus each file's measured duration into segments and gaps, the same way while recording and in `cht rebuild`, so a
rebuilt manifest equals the one a clean stop writes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, StringConstraints, TypeAdapter, ValidationError, with_config

from cht.errors import SessionError
from cht.media import fmp4

log = logging.getLogger("cht.session")

MANIFEST_VERSION = 1
SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SEGMENT_FILE = re.compile(r"^seg_(\d{5,})\.mp4$")
SEGMENT_PATH = r"^segments/seg_\d{5,}\.mp4$"  # what a manifest may name: nothing outside the session
PRIVATE_DIR = 0o700  # recordings are their owner's: nobody else may list or read a session
GAP_EPSILON_S = 0.001  # seconds: smaller differences between runs are rounding, not gaps

# Metadata keys each segment file carries (mp4 `use_metadata_tags`).
META_RUN = "cht_run"  # the recorder run that wrote it
META_GLOBAL_START = "cht_global_start"  # clocked sources (files): where the run starts, global s
META_ORIGIN = "cht_origin"  # live sources: epoch s of global time 0 (absent on a session's first run)
META_STARTED_AT = "cht_started_at"  # epoch s the run was started: the fallback wall clock
META_SOURCE = "cht_source"


SessionState = Literal["recording", "stopped", "crashed"]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(iso_text: str) -> float:
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()


REWRITE_BYTES_PER_S = 50_000  # a derived file rewritten while live costs at most this much disk a second


def rewrite_every(size: int, least_s: float) -> float:
    """Seconds between live rewrites of a derived file that grows with the session (the
    transcript index, speakers.json): `least_s`, or longer once the file is big, so a room
    recording for days does not rewrite megabytes every few seconds (a day of speech: the
    transcript index is 3.3 MB, rewritten every 66 s instead of every 2 s)."""
    return max(least_s, size / REWRITE_BYTES_PER_S)


def atomic_write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    """Write temp + fsync + rename, so readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class SegmentFacts:
    """What one segment file says about itself."""

    file: str  # relative to the session dir
    index: int
    run: int
    run_global_start: float | None  # seconds: where a clocked (file) run starts on the global clock
    origin: float | None  # epoch seconds of global time 0, for a live run after the session's first
    started_at: float  # epoch seconds: when its first media arrived
    duration: float  # seconds of complete fragments
    bytes: int
    holes: tuple = ()  # (start, end) seconds from the file's start: damaged media skipped by a repair


def segment_facts(
    file: str, index: int, scan: fmp4.Fmp4Scan, meta: dict[str, str], first_media_at: float | None
) -> SegmentFacts | None:
    """Facts from a segment's scan, its metadata and its run's first-media time (read from the
    files, or the very values the lifecycle holds: one function serves the live manifest and
    `cht rebuild`)."""
    try:
        run = int(meta[META_RUN])
        global_start = float(meta[META_GLOBAL_START]) if META_GLOBAL_START in meta else None
        origin = float(meta[META_ORIGIN]) if META_ORIGIN in meta else None
        started = float(meta[META_STARTED_AT])
    except (KeyError, ValueError):
        return None  # not a cht segment (or its header never got written)
    if first_media_at is not None and global_start is None:  # a live run: when media really came
        started = first_media_at
    return SegmentFacts(file, index, run, global_start, origin, started, scan.duration, scan.complete_bytes,
                        tuple(scan.holes))


@with_config(ConfigDict(extra="forbid"))
@dataclass
class Segment:
    file: Annotated[str, StringConstraints(pattern=SEGMENT_PATH)]
    global_start: float
    duration: float
    started_at: str
    ended_at: str
    run: int
    bytes: int

    @property
    def global_end(self) -> float:
        return self.global_start + self.duration


@with_config(ConfigDict(extra="forbid"))
@dataclass
class Gap:
    start: float
    end: float
    reason: str = ""  # why, when it is not an outage of the source (a damaged file)


@dataclass
class Manifest:
    id: str
    source: str
    state: SessionState
    reason: str = ""
    started_at: str = ""
    segments: list[Segment] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    @property
    def duration(self) -> float:
        return self.segments[-1].global_end if self.segments else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["duration"] = round(self.duration, 3)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        """Checked against the schema: a manifest of the wrong shape is a SessionError, never a
        KeyError halfway through listing every session."""
        version = data.get("version") if isinstance(data, dict) else None
        if version != MANIFEST_VERSION:
            raise SessionError(f"manifest version {version!r} is not {MANIFEST_VERSION}: run `cht rebuild`")
        try:
            return _MANIFEST.validate_python(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SessionError(f"manifest has the wrong shape ({where}: {first['msg']}): run `cht rebuild`") from None


_MANIFEST = TypeAdapter(Manifest)


def derive(facts: list[SegmentFacts]) -> tuple[list[Segment], list[Gap]]:
    """Segments and gaps on the global clock from the facts of each file, in index order.

    A run's first segment starts where its run starts: at its stated global start (a file
    is its own clock), else at its first media's wall-clock distance from the session's
    origin (live sources), and never before the previous segment's end. Later segments of a
    run follow on seamlessly, as ffmpeg's segment muxer rotates without a gap. Any space
    left between runs is an explicit gap.
    """
    segments: list[Segment] = []
    gaps: list[Gap] = []
    prev: Segment | None = None
    for fact in sorted(facts, key=lambda f: f.index):
        if fact.duration <= 0:
            continue
        if prev is not None and prev.run == fact.run:
            start = prev.global_end
            started = epoch(prev.ended_at)
        else:
            if fact.run_global_start is not None:
                start = fact.run_global_start
            elif fact.origin is not None:
                start = fact.started_at - fact.origin
            else:
                start = 0.0  # the session's first run: its first media is global time 0
            if prev is not None:
                start = max(start, prev.global_end)
                if start - prev.global_end > GAP_EPSILON_S:
                    gaps.append(Gap(round(prev.global_end, 3), round(start, 3)))
            started = fact.started_at
        seg = Segment(
            file=fact.file,
            global_start=round(start, 3),
            duration=round(fact.duration, 3),
            started_at=iso(started),
            ended_at=iso(started + fact.duration),
            run=fact.run,
            bytes=fact.bytes,
        )
        segments.append(seg)
        gaps += [Gap(round(start + a, 3), round(start + b, 3), "damaged media skipped by a repair")
                 for a, b in fact.holes]
        prev = seg
    return segments, sorted(gaps, key=lambda g: g.start)


def segment_index(path: Path) -> int | None:
    match = SEGMENT_FILE.match(path.name)
    return int(match.group(1)) if match else None


def read_segment_metadata(path: Path) -> dict[str, str]:
    import av  # PyAV loads FFmpeg's libraries: only when a file is probed

    try:
        with av.open(str(path)) as container:
            return dict(container.metadata)
    except av.FFmpegError:
        return {}


class Session:
    """One session directory. Creating one is exclusive; opening one checks the id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.id = root.name
        self._lock_fd: int | None = None

    # -- paths --
    @property
    def segments_dir(self) -> Path:
        return self.root / "segments"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def log_path(self) -> Path:
        return self.root / "session.log"

    @property
    def control_path(self) -> Path:
        return self.root / "control.sock"

    @property
    def recorder_log_path(self) -> Path:
        return self.root / "recorder.log"

    @staticmethod
    def sessions_dir(data_dir: Path) -> Path:
        return data_dir / "sessions"

    # -- create / open --
    @classmethod
    def create(cls, data_dir: Path, session_id: str | None = None) -> "Session":
        base = cls.sessions_dir(data_dir)
        try:
            base.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=base):  # unique per call: the ingest creates sessions in parallel
                pass
        except OSError as exc:
            raise SessionError(
                f"data dir {data_dir} is not writable ({exc.strerror}): choose another with --data-dir or CHT_DATA_DIR"
            ) from None
        if session_id is not None:
            check_id(session_id)
            root = base / session_id
            try:
                root.mkdir(mode=PRIVATE_DIR)
            except FileExistsError:
                raise SessionError(f"session {session_id} already exists") from None
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for n in range(1000):
                root = base / (stamp if n == 0 else f"{stamp}-{n}")
                try:
                    root.mkdir(mode=PRIVATE_DIR)
                    break
                except FileExistsError:
                    continue
        session = cls(root)
        session.segments_dir.mkdir(mode=PRIVATE_DIR)
        return session

    @classmethod
    def open(cls, data_dir: Path, session_id: str) -> "Session":
        check_id(session_id)
        root = cls.sessions_dir(data_dir) / session_id
        if not root.is_dir():
            raise SessionError(f"no session {session_id!r} in {data_dir}: `cht sessions` lists them")
        return cls(root)

    def remove(self) -> None:
        """Delete a session that recorded nothing (a failed start)."""
        shutil.rmtree(self.root, ignore_errors=True)

    # -- liveness: a recording holds an exclusive lock on the session --
    def lock(self) -> None:
        fd = take_lock(self.root / ".lock")
        if fd is None:
            raise SessionError(f"session {self.id} is being recorded by another cht process")
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def is_recording(self) -> bool:
        """True while some cht process holds this session's lock."""
        return self._lock_fd is not None or lock_held(self.root / ".lock")

    # -- manifest --
    def segment_files(self) -> list[Path]:
        files = [p for p in self.segments_dir.glob("seg_*.mp4") if segment_index(p) is not None]
        return sorted(files, key=segment_index)

    def next_segment_index(self) -> int:
        files = self.segment_files()
        return segment_index(files[-1]) + 1 if files else 0

    def load_manifest(self) -> Manifest | None:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SessionError(f"manifest of {self.id} is unreadable ({exc}): run `cht rebuild {self.id}`") from None
        return Manifest.from_dict(data)

    def save_manifest(self, manifest: Manifest) -> None:
        atomic_write_json(self.manifest_path, manifest.to_dict())

    def run_note_path(self, run: int) -> Path:
        return self.segments_dir / f"run_{run:04d}.json"

    def write_run_note(self, run: int, first_media_at: float) -> None:
        atomic_write_json(self.run_note_path(run), {"run": run, "first_media_at": first_media_at})

    def read_run_note(self, run: int) -> float | None:
        try:
            return float(json.loads(self.run_note_path(run).read_text())["first_media_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def facts_from_files(self) -> tuple[list[SegmentFacts], str]:
        """Each segment's facts read from the files alone, and the source they name."""
        facts, source = [], ""
        for path in self.segment_files():
            meta = read_segment_metadata(path)
            run = meta.get(META_RUN, "")
            first_media_at = self.read_run_note(int(run)) if run.isdigit() else None
            fact = segment_facts(str(path.relative_to(self.root)), segment_index(path), fmp4.scan(path), meta,
                                 first_media_at)
            if fact is not None:
                facts.append(fact)
                source = source or meta.get(META_SOURCE, "")
        return facts, source

    def rebuild(self) -> Manifest:
        """Re-derive manifest.json from the segment files, cutting torn last fragments and
        dropping files that hold no media."""
        old = None
        try:
            old = self.load_manifest()
        except SessionError:
            pass
        if not self.is_recording():
            for path in self.segment_files():
                close_segment(path)
        facts, source = self.facts_from_files()
        segments, gaps = derive(facts)
        gaps = sorted(gaps + self._set_aside_gaps(segments), key=lambda g: g.start)
        if self.is_recording():
            state, reason = "recording", ""
        elif old is None:
            state, reason = "stopped", "rebuilt from the segment files"
        elif old.state == "recording" or old.state == "crashed":
            state, reason = "crashed", "the recording process ended without stopping; rebuilt from the segment files"
        else:
            state, reason = old.state, old.reason
        manifest = Manifest(
            id=self.id,
            source=old.source if old else source,
            state=state,
            reason=reason,
            started_at=segments[0].started_at if segments else (old.started_at if old else ""),
            segments=segments,
            gaps=gaps,
        )
        self.save_manifest(manifest)
        return manifest

    def _set_aside_gaps(self, segments: list[Segment]) -> list[Gap]:
        """A file a repair set aside is named in the manifest where it stood (its length is
        unknown: its header, which holds the timescale, is what was lost)."""
        gaps = []
        for path in sorted(self.segments_dir.glob("seg_*.mp4.damaged*")):
            index = int(re.match(r"seg_(\d+)", path.name).group(1))
            before = [s for s in segments if segment_index(Path(s.file)) < index]
            at = before[-1].global_end if before else 0.0
            gaps.append(Gap(round(at, 3), round(at, 3), f"{path.name}: unreadable, set aside"))
        return gaps

    def current_manifest(self) -> Manifest:
        """The manifest as it stands, with a recording whose process died shown as crashed."""
        manifest = self.load_manifest()
        if manifest is None:
            raise SessionError(f"session {self.id} has no manifest: run `cht rebuild {self.id}`")
        if manifest.state == "recording" and not self.is_recording():
            manifest.state = "crashed"
        return manifest


def take_lock(path: Path) -> int | None:
    """An exclusive lock on `path` (which then holds our pid), or None if another process has
    it. The kernel drops it when the holder dies, however it dies: that is the liveness proof."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def lock_holder(path: Path) -> str:
    """The pid a lock file names (for the message that says who holds it), or "?"."""
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def lock_held(path: Path) -> bool:
    """True while some process holds the lock on `path`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def close_segment(path: Path) -> bool:
    """Make a segment whose writer has gone safe to read (`fmp4.repair`: cut only a torn last
    fragment, skip damage elsewhere, set an unreadable file aside). A file that is nothing but
    a header (a kill during rotation) holds no media and is removed. True if media remains."""
    done = fmp4.repair(path)
    if done.skipped or done.set_aside:
        log.warning("%s", done.describe(path.name))
    elif done.cut:
        log.info("%s", done.describe(path.name))
    if done.set_aside is not None:
        return False
    info = fmp4.scan(path)
    if info.fragments:
        return True
    size = os.path.getsize(path)
    if size == 0 or (info.has_moov and info.complete_bytes == size):
        path.unlink(missing_ok=True)
    return False


def check_id(session_id: str) -> None:
    if not SESSION_ID.match(session_id):
        raise SessionError(
            f"{session_id!r} is not a valid session id: use letters, digits, '.', '_' or '-' (at most 64)"
        )


def list_sessions(data_dir: Path) -> list[tuple[Session, Manifest | None]]:
    base = Session.sessions_dir(data_dir)
    if not base.is_dir():
        return []
    out = []
    for root in sorted(p for p in base.iterdir() if p.is_dir() and SESSION_ID.match(p.name)):
        session = Session(root)
        try:
            manifest = session.current_manifest()
        except SessionError:
            manifest = None
        out.append((session, manifest))
    return out
