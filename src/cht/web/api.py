"""Recordings started over HTTP (`POST /api/recordings`): `cht serve` records in its own process.

Each is built exactly as `cht record` builds one (`build_recording`: the same source checks,
the same session layout, the same stages), so a source the CLI refuses is refused here with
the same one-line reason, as a 422. A driver thread per recording does what `cht record`'s
loop does: it waits for the end, and turns a requested stop into a stop. The page sees the
recording live (its bus, capture, status) while it runs; the search index gets its lines.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from cht import events as ev
from cht.config import (
    RecordOptions,
    SceneOptions,
    default_cache_dir,
    parse_duration,
    parse_size,
)
from cht.errors import ChtError, SessionError
from cht.index.live import follow
from cht.index.search import SearchIndex
from cht.lifecycle import source_label
from cht.record.sources import parse_source
from cht.recording import Recording, build_recording
from cht.session import Session, check_id
from cht.sessionlog import as_session, spawn

log = logging.getLogger("cht.web")

MAX_COMMIT_DELAY_S = 10.0  # as `--commit-delay`
STOP_WAIT_S = 60.0  # seconds `POST …/stop` waits for the recording to finish before it answers


class RecordingOptions(BaseModel):
    """What `cht record`'s flags say, by the same names."""

    model_config = ConfigDict(extra="forbid")
    fast: bool = Field(False, description="file sources: as fast as possible, not at real pace")
    append: bool = Field(False, description="continue the existing `session` after a gap")
    max_segment: str = Field("30m", description="start a new segment after this long (90s, 30m)")
    min_free: str = Field("64M", description="stop cleanly when the data dir has less free space")
    analyze: bool = Field(True, description="keyframes, waveform, slide text")
    transcribe: bool = Field(True, description="a live transcript (loads the speech model)")
    language: str | None = Field(None, description="spoken language code, e.g. en (default: detect)")
    min_scene: str = Field("2s", description="changes closer than this to the last are not new scenes")
    commit_delay: float = Field(0.0, description="commit a live transcript word only once this "
                                "many seconds of speech after it were heard (`--commit-delay`)")


class StartRecording(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(..., description="what `cht record SOURCE` takes: a file, a URL, a listener, 'demo'")
    session: str | None = Field(None, description="name the session (letters, digits, . _ -)")
    options: RecordingOptions = Field(default_factory=RecordingOptions)


class RecordingInfo(BaseModel):
    id: str = Field(..., description="the session id")
    source: str
    state: str = Field(..., description="recording | stopping | stopped | crashed")
    reason: str = ""
    duration: float = Field(..., description="seconds of media on the global clock")
    lag: float | None = Field(None, description="seconds of audio not yet transcribed (None: no transcript)")
    started_at: str = ""
    url: str = Field(..., description="the session's page")


@dataclass
class Started:
    recording: Recording
    label: str
    stopping: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class Recordings:
    """The recordings this server process started."""

    def __init__(self, data_dir: Path, live: dict, index: Callable[[], SearchIndex], *, enabled: bool = True) -> None:
        self.data_dir, self.live, self.index, self.enabled = data_dir, live, index, enabled
        self._items: dict[str, Started] = {}
        self._lock = threading.Lock()
        self._engine = None  # one speech model for every recording, loaded by the first that wants it

    def start(self, request: StartRecording) -> Started:
        if not self.enabled:
            raise HTTPException(409, "this server does not record (`cht open`, or a recording's own page): "
                                     "use `cht serve`")
        options, source = self._checked(request)
        stages, config = self._stages(request.options)
        append_to = None
        if request.session is not None and (Session.sessions_dir(self.data_dir) / request.session).exists():
            session = Session.open(self.data_dir, request.session)
            if session.is_recording():
                raise SessionError(f"session {request.session} is being recorded right now")
            if not request.options.append:
                raise SessionError(f"session {request.session} already exists: set options.append to continue it "
                                   "after a gap, or choose another session name")
            append_to = session.rebuild()
        else:
            session = Session.create(self.data_dir, request.session)
        bus = ev.EventBus()
        recording = build_recording(session, source, options, bus, cache_dir=self.data_dir / "cache", stages=stages,
                                    config=config, append_to=append_to)
        item = Started(recording, source_label(source))
        from cht.web.app import LiveSession

        with self._lock:
            self._items[session.id] = item
            self.live[session.id] = LiveSession(bus, recording.capture, lambda: recording.manifest,
                                                recording.status)
        try:
            bus.subscribe(follow(self.index(), session.id, lambda: recording.manifest.started_at, item.label))
        except Exception as exc:  # noqa: BLE001 - the index is derived: `cht reindex` catches up
            log.warning("search index not followed for %s (%s): run `cht reindex` later", session.id, exc)
        started: list[BaseException | None] = []
        ready = threading.Event()
        with as_session(session.id):  # the recording's threads log to its session.log alone
            spawn(self._drive, session.id, item, started, ready, name="cht-api-recording")
        ready.wait()
        if started[0] is not None:
            with self._lock:
                self._items.pop(session.id, None)
                self.live.pop(session.id, None)
            if append_to is None:
                session.remove()
            raise started[0]
        return item

    def _checked(self, request: StartRecording):
        """The checks `cht record` makes before anything is created, in the same words."""
        o = request.options
        options = RecordOptions(fast=o.fast, max_segment_s=_parsed(parse_duration, o.max_segment),
                                min_free_bytes=_parsed(parse_size, o.min_free))
        SceneOptions(min_scene_s=_parsed(parse_duration, o.min_scene))
        if not 0.0 <= o.commit_delay <= MAX_COMMIT_DELAY_S:
            raise SessionError(f"options.commit_delay is {o.commit_delay}: give 0-{MAX_COMMIT_DELAY_S:g} seconds")
        if o.append and request.session is None:
            raise SessionError("options.append continues a session: name it with session")
        if request.session is not None:
            check_id(request.session)
        source = parse_source(request.source)
        if source.kind == "screen":
            raise SessionError("'screen' records the display of the machine cht runs on: use `cht record screen` there")
        free = shutil.disk_usage(self.data_dir if self.data_dir.exists() else self.data_dir.parent).free
        if free < options.min_free_bytes:
            raise SessionError(f"only {free} bytes free in {self.data_dir} (min_free is {options.min_free_bytes})")
        return options, source

    def _stages(self, o: RecordingOptions):
        """The stages `cht record` would run for these options (the model only for a transcript)."""
        from cht.stages import ALL, StageConfig
        from cht.transcribe.model import check_language
        from cht.transcribe.worker import TranscribeOptions

        language = check_language(o.language)
        scenes = SceneOptions(min_scene_s=_parsed(parse_duration, o.min_scene))
        stages = tuple(n for n in ALL if o.analyze and (o.transcribe or n not in ("transcript", "speakers")))
        if "transcript" in stages and self._engine is None:
            from cht.transcribe.engine import SpeechEngine
            from cht.transcribe.model import SpeechModel, default_model_dir

            self._engine = SpeechEngine(SpeechModel(default_model_dir(default_cache_dir())))
        engine = self._engine if "transcript" in stages else None
        return stages, StageConfig(scenes=scenes, engine=engine, transcribe=TranscribeOptions(language=language, commit_delay_s=o.commit_delay))

    def _drive(self, session_id: str, item: Started, started: list, ready: threading.Event) -> None:
        """Start the recording, then `cht record`'s loop: a requested stop becomes a stop.

        The recorder is started from this thread, which lives as long as the recording: ffmpeg
        dies with the thread that started it (PR_SET_PDEATHSIG), and a request's worker
        thread may end long before."""
        recording = item.recording
        try:
            recording.start()
            started.append(None)
        except BaseException as exc:
            started.append(exc)
            return
        finally:
            ready.set()
        while not recording.wait(0.2):
            if recording.stop_requested:
                recording.stop()
        item.done.set()
        with self._lock:
            self.live.pop(session_id, None)

    def stop(self, session_id: str, wait: float = STOP_WAIT_S) -> Started:
        item = self.get(session_id)
        item.stopping = True
        item.recording.request_stop()
        item.done.wait(wait)
        return item

    def stop_all(self) -> None:
        """The server is going: every recording stops and finishes (no recorder left behind)."""
        with self._lock:
            items = list(self._items.values())
        for item in items:
            item.recording.request_stop()
        for item in items:
            item.done.wait()

    def get(self, session_id: str) -> Started:
        with self._lock:
            item = self._items.get(session_id)
        if item is None:
            raise HTTPException(404, f"no recording {session_id!r} was started by this server: GET /api/recordings")
        return item

    def list(self) -> list[tuple[str, Started]]:
        with self._lock:
            return sorted(self._items.items())


def info(session_id: str, item: Started) -> RecordingInfo:
    manifest = item.recording.manifest
    state = manifest.state if item.done.is_set() else ("stopping" if item.stopping else "recording")
    lag = item.recording.status().get("transcript_lag") if not item.done.is_set() else None
    return RecordingInfo(id=session_id, source=item.label, state=state, reason=manifest.reason,
                         duration=round(manifest.duration, 3), lag=lag, started_at=manifest.started_at,
                         url=f"/session/{session_id}")


def router(recordings: Recordings) -> APIRouter:
    api = APIRouter(tags=["recordings"])
    bad = {422: {"description": "the one-line reason `cht record` gives for the same input"}}

    @api.post("/api/recordings", response_model=RecordingInfo, status_code=201, responses=bad)
    def start_recording(body: StartRecording) -> RecordingInfo:
        """Start recording `source` in this server process, as `cht record SOURCE` would."""
        try:
            item = recordings.start(body)
        except ChtError as exc:
            raise HTTPException(422, " ".join(str(exc).split())) from None
        return info(item.recording.session.id, item)

    @api.get("/api/recordings", response_model=list[RecordingInfo])
    def list_recordings() -> list[RecordingInfo]:
        """The recordings this server started: state, duration and transcript lag of each."""
        return [info(sid, item) for sid, item in recordings.list()]

    @api.post("/api/recordings/{session_id}/stop", response_model=RecordingInfo,
              responses={404: {"description": "no such recording"}})
    def stop_recording(session_id: str) -> RecordingInfo:
        """Stop it as Ctrl-C stops `cht record` (the transcript drains); answers once it has
        stopped, or after a minute with state `stopping`."""
        return info(session_id, recordings.stop(session_id))

    return api


def _parsed(parse, text: str):
    try:
        return parse(text)
    except ValueError as exc:
        raise SessionError(str(exc)) from None

