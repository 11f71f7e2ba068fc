"""The `cht` command line. It parses, calls the core, and prints; user mistakes become
one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import logging
import shutil
import signal
import sqlite3
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer

try:
    from typer._click.exceptions import UsageError  # typer vendors its own click
except ImportError:  # older typer: plain click
    from click import UsageError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cht import events as ev
from cht.config import (RecordOptions, SceneOptions, default_cache_dir, default_data_dir, parse_duration,
                        parse_since, parse_size, ui_url, UI_HOST, UI_PORT)
from cht.console import RecordingView, fmt_bytes, fmt_time
from cht.control import request as control_request
from cht.errors import ChtError, SessionError
from cht.index.live import follow as index_lines_of, reindex_all, reindex_session
from cht.index.query import parse as parse_query
from cht.index.search import MARK_END, MARK_START, SearchIndex
from cht.lifecycle import source_label
from cht.ingest.endpoints import __doc__ as ENDPOINTS_DOC
from cht.record.sources import HELP as SOURCE_HELP
from cht.record.sources import parse_source
from cht.session import Session, check_id, list_sessions

LISTEN_HELP = ENDPOINTS_DOC.split("\n\n")[1] + "\n"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Record a live stream and turn it, while it records, into a browsable, searchable timeline.",
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

EXIT_USER_ERROR = 2
EXIT_ABNORMAL_END = 1
ABNORMAL_REASONS = ("disk full", "data dir not writable")  # stopped, but not because anyone asked


# Options several commands share (typer takes the same default object in each).
MIN_SCENE = typer.Option("2s", "--min-scene", help="Changes closer than this to the last are not new scenes.")
MODEL = typer.Option(None, "--model", help="A CTranslate2 Whisper model dir (default: Whisper base).")
LANGUAGE = typer.Option(None, "--language", help="Spoken language code, e.g. en (default: detect).")
COMMIT_DELAY = typer.Option(0.0, "--commit-delay", min=0.0, max=10.0, metavar="S",
                            help="Commit a live transcript word only once S seconds of speech after it were heard: "
                                 "later, more accurate text (2: about 1 s later, 1-2 points fewer errors on hard speech).")
NO_UI = typer.Option(False, "--no-ui", help="No web timeline.")
STAGES = typer.Option(None, "--stages", help="Only these stages, comma-separated, of scenes,waveform,transcript,"
                      "ocr,speakers (default: all).")
QUEUE = typer.Option(None, "--queue", envvar="CHT_QUEUE", metavar="URL",
                     help="Transcribe on `cht worker`s through this NATS server (nats://HOST:4222; "
                          "credentials in the URL or CHT_QUEUE are never printed).")
QUEUE_CREDS = typer.Option(None, "--queue-creds", metavar="FILE", help="A NATS .creds file for --queue.")
UI_HOST_OPTION = typer.Option(UI_HOST, "--host", help="Web UI address (beyond loopback it needs a token).")
UI_PORT_OPTION = typer.Option(UI_PORT, "--port", min=1, max=65535, help="Web UI port (the next free one if busy).")
ON_SEGMENT = typer.Option(None, "--on-segment", metavar="CMD", help="Run CMD with each finished segment's path and "
                          "the session id as two more arguments (no shell; never delays the recording).")


class State:
    data_dir: Path = default_data_dir()
    queue: tuple[str, Path | None] | None = None  # --queue URL and --queue-creds: speech on workers


@app.callback()
def main_options(
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", envvar="CHT_DATA_DIR", help="Where sessions live (default: the per-user data dir)."
    ),
) -> None:
    if data_dir is not None:
        State.data_dir = data_dir.expanduser()


def _load_engine(model: Path | None):
    """The process's one speech engine, loaded before anything is recorded: a missing model
    (or an unreachable --queue) fails fast."""
    from cht.transcribe.engine import SpeechEngine
    from cht.transcribe.model import SpeechModel, check_model_dir, default_model_dir

    if State.queue is not None:
        from cht.queue.engine import QueueEngine

        if model is not None:
            raise SessionError("--model names the model of this process; with --queue the workers' "
                               "models decode (give --model to `cht worker`)")
        return QueueEngine(State.queue[0], creds=State.queue[1])

    model_dir = check_model_dir(model) if model is not None else default_model_dir(default_cache_dir())
    return SpeechEngine(SpeechModel(model_dir))


def _queue(url: str | None, creds: Path | None) -> None:
    """Remember --queue for `_load_engine`; a malformed URL fails before anything starts."""
    if url is None:
        if creds is not None:
            raise SessionError("--queue-creds goes with --queue URL")
        return
    from cht.queue.connect import check_url

    State.queue = (check_url(url), creds)


def _stage_config(*, analyze: bool, transcribe: bool, model: Path | None, language: str | None,
                  min_scene: str = "2s", stages: tuple[str, ...] | None = None, commit_delay: float = 0.0):
    """The stages to run (None: what --no-analyze/--no-transcribe leave) and what they need;
    the model is loaded only when a transcript is wanted."""
    from cht.stages import ALL, StageConfig
    from cht.transcribe.model import check_language
    from cht.transcribe.worker import TranscribeOptions

    language = check_language(language)
    scene_options = SceneOptions(min_scene_s=_parsed(parse_duration, min_scene))
    if stages is None:
        stages = tuple(n for n in ALL if analyze and (transcribe or n not in ("transcript", "speakers")))
    engine = _load_engine(model) if "transcript" in stages else None
    transcribe_options = TranscribeOptions(language=language, commit_delay_s=commit_delay)
    return stages, StageConfig(scenes=scene_options, engine=engine, transcribe=transcribe_options)


def _chosen_stages(text: str | None, *, analyze: bool, transcribe: bool) -> tuple[str, ...] | None:
    """`--stages`, checked before anything starts; None: the default stages."""
    from cht.stages import parse_stages

    if text is None:
        return None
    if not (analyze and transcribe):
        raise SessionError("--stages names every stage to run: give it or --no-analyze/--no-transcribe, not both")
    return parse_stages(text)


@dataclass
class UiOptions:
    enabled: bool = True
    host: str = UI_HOST
    port: int = UI_PORT
    token: str | None = None


def _record(source_spec: str, *, session_id: str | None, append: bool, fast: bool,
            max_segment: str, min_free: str, analyze: bool = True, min_scene: str = "2s",
            transcribe: bool = True, model: Path | None = None, language: str | None = None,
            ui: UiOptions | None = None, on_segment: str | None = None,
            stages: tuple[str, ...] | None = None, commit_delay: float = 0.0) -> int:
    from cht.hooks import parse_command

    hook_argv = parse_command(on_segment) if on_segment is not None else None
    options = RecordOptions(fast=fast, max_segment_s=_parsed(parse_duration, max_segment),
                            min_free_bytes=_parsed(parse_size, min_free))
    SceneOptions(min_scene_s=_parsed(parse_duration, min_scene))  # a bad value fails before anything loads
    if append and session_id is None:
        raise SessionError("--append continues a session: name it with --session ID")
    source = parse_source(source_spec)
    data_dir = State.data_dir
    append_to = None
    if session_id is not None:
        check_id(session_id)
        existing = Session.sessions_dir(data_dir) / session_id
        if existing.exists():
            session = Session.open(data_dir, session_id)
            if session.is_recording():
                raise SessionError(f"session {session_id} is being recorded right now")
            if not append:
                raise SessionError(
                    f"session {session_id} already exists: add --append to continue it after a gap, "
                    "or choose another --session name"
                )
            append_to = session.rebuild()
    _check_free_space(data_dir, options.min_free_bytes)
    stages, config = _stage_config(analyze=analyze, transcribe=transcribe, model=model, language=language,
                                   min_scene=min_scene, stages=stages, commit_delay=commit_delay)
    if append_to is None:
        session = Session.create(data_dir, session_id)
    bus = ev.EventBus()
    from cht.recording import build_recording  # the recorder, stages and model: not for `cht sessions`

    recording = build_recording(session, source, options, bus, cache_dir=data_dir / "cache", stages=stages,
                                config=config, append_to=append_to)
    if source.kind == "listen":
        err.print(f"waiting for a stream on {source_label(source)} (Ctrl-C to give up)")
    hook = None
    if on_segment is not None:
        from cht.hooks import SegmentHook

        hook = SegmentHook(hook_argv, session, lambda: recording.manifest)
        bus.subscribe(hook)
    try:
        return _drive(recording, session, bus, source_label(source), ui)
    finally:
        if hook is not None:
            hook.close()
            failed = sum(1 for _, code in hook.ran if code != 0)
            err.print(f"--on-segment ran {len(hook.ran)} time(s)" + (f", {failed} failed (see session.log)"
                                                                       if failed else ""))


def _attach(*, timeout: float, analyze: bool, min_scene: str, transcribe: bool, model: Path | None,
            language: str | None, ui: UiOptions | None, stages: tuple[str, ...] | None = None,
            commit_delay: float = 0.0) -> int:
    """`cht record --attach`: the session the ingest service records, analysed here."""
    from cht.watch import WatchedSession, wait_for_session

    stages, config = _stage_config(analyze=analyze, transcribe=transcribe, model=model, language=language,
                                   min_scene=min_scene, stages=stages, commit_delay=commit_delay)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    err.print(f"waiting for the ingest service's session in {State.data_dir} (up to {timeout:g} s)")
    session = wait_for_session(State.data_dir, timeout, lambda: bool(stop), lambda m: err.print(m, soft_wrap=True))
    bus = ev.EventBus()
    attached = WatchedSession(session, bus, stages, config)
    return _drive(attached, session, bus, attached.manifest.source, ui)


def _drive(run, session: Session, bus: ev.EventBus, label: str, ui: UiOptions | None) -> int:
    """Run a recording (or a followed session) to its end: Ctrl-C / SIGTERM stop it, the
    web timeline and the search index follow it, the terminal shows its status."""
    index = _open_index()
    if index is not None:
        bus.subscribe(index_lines_of(index, session.id, lambda: run.manifest.started_at, label))

    def on_signal(signum, _frame):
        run.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    web = None
    if ui is not None and ui.enabled:
        from cht.web.app import LiveSession, UiState
        from cht.web.server import WebServer

        state = UiState(State.data_dir, live={session.id: LiveSession(bus, run.capture, lambda: run.manifest,
                                                                          run.status)})
        web = WebServer(state, host=ui.host, port=ui.port, token=ui.token)
    with RecordingView(err) as view:
        bus.subscribe(view)
        run.start()
        web = _start_web(web, session.id)
        while not run.wait(0.2):
            if run.stop_requested:
                run.stop()
    if web is not None:
        web.stop()
    manifest = run.manifest
    out.print(f"session {session.id}: {manifest.state}, {len(manifest.segments)} segment(s), "
              f"{fmt_time(manifest.duration)} of media, {len(manifest.gaps)} gap(s)")
    abnormal = manifest.state not in ("stopped", "recording") or manifest.reason.startswith(ABNORMAL_REASONS)
    return EXIT_ABNORMAL_END if abnormal else 0


def _start_web(web, session_id: str | None = None):
    """Start the web UI and print its URL; a UI that cannot start is a warning, not a stop."""
    if web is None:
        return None
    try:
        web.start()
    except ChtError as exc:
        err.print(f"warning: {exc}")
        return None
    err.print(f"timeline: {web.url(session_id)}")
    return web


def _open_index() -> SearchIndex | None:
    """The search index, if it can be opened: it is derived, so a recording never depends on it."""
    try:
        return SearchIndex(State.data_dir)
    except (sqlite3.Error, OSError) as exc:
        err.print(f"warning: search index unavailable ({exc}); run `cht reindex` later")
        return None


def _reindex(session: Session) -> None:
    index = _open_index()
    if index is not None:
        try:
            reindex_session(index, session)
        finally:
            index.close()


def _parsed(parse, text: str):
    """A flag's value parsed, or a one-line user error."""
    try:
        return parse(text)
    except ValueError as exc:
        raise SessionError(str(exc)) from None


@contextmanager
def _analysing(session: Session) -> Iterator[None]:
    """Hold the session's analysis lock: no follower may write the same files meanwhile."""
    import os

    from cht.recording import claim_analysis

    fd = claim_analysis(session)
    try:
        yield
    finally:
        os.close(fd)


@contextmanager
def _progress(label: str, duration: float) -> Iterator[Callable[[float], None]]:
    """A transient progress bar over a session's media; yields the callback taking global time."""
    with Progress(TextColumn(label), BarColumn(), TextColumn("{task.fields[at]}"), TimeRemainingColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task(label, total=max(duration, 0.001), at="")
        yield lambda t: progress.update(task, completed=t, at=f"{fmt_time(t)} / {fmt_time(duration)}")


def _check_free_space(data_dir: Path, min_free: int) -> None:
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), Path("/"))
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return  # Session.create reports an unusable data dir
    if free < min_free:
        raise SessionError(
            f"only {fmt_bytes(free)} free in {data_dir} (--min-free is {fmt_bytes(min_free)}): "
            "free some space, lower --min-free or choose another --data-dir"
        )


@app.command(help="Record SOURCE until Ctrl-C / SIGTERM (or until a file source ends).\n\n\b\nSOURCE forms:\n"
             + SOURCE_HELP)
def record(
    source: Optional[str] = typer.Argument(None, help="What to record (see the forms above)."),
    session_id: Optional[str] = typer.Option(None, "--session", help="Name the session (letters, digits, . _ -)."),
    append: bool = typer.Option(False, "--append", help="Continue an existing --session after a gap."),
    fast: bool = typer.Option(False, "--fast", help="File sources: record as fast as possible, not at real pace."),
    max_segment: str = typer.Option("30m", "--max-segment", help="Start a new segment after this long (e.g. 90s, 30m)."),
    min_free: str = typer.Option("64M", "--min-free", help="Stop cleanly when the data dir has less free space."),
    no_analyze: bool = typer.Option(False, "--no-analyze", help="Only record: no keyframes, no waveform."),
    min_scene: str = MIN_SCENE,
    no_transcribe: bool = typer.Option(False, "--no-transcribe", help="No live transcript (`cht transcribe` later)."),
    stages: Optional[str] = STAGES,
    model: Optional[Path] = MODEL,
    language: Optional[str] = LANGUAGE,
    commit_delay: float = COMMIT_DELAY,
    no_ui: bool = NO_UI,
    host: str = UI_HOST_OPTION,
    port: int = UI_PORT_OPTION,
    token: Optional[str] = typer.Option(None, "--token", envvar="CHT_TOKEN", help="Web UI token (default: generated when exposed)."),
    attach: bool = typer.Option(False, "--attach", help="No SOURCE: analyse the session `cht ingest` records."),
    timeout: str = typer.Option("30s", "--timeout", help="--attach: how long to wait for the ingest's session."),
    on_segment: Optional[str] = ON_SEGMENT,
    queue: Optional[str] = QUEUE,
    queue_creds: Optional[Path] = QUEUE_CREDS,
) -> None:
    _queue(queue, queue_creds)
    ui = UiOptions(not no_ui, host, port, token)
    picked = _chosen_stages(stages, analyze=not no_analyze, transcribe=not no_transcribe)
    if attach:
        if source is not None or session_id is not None or append:
            raise SessionError("--attach records no SOURCE of its own and takes no --session/--append: "
                               "the ingest service names the session")
        raise typer.Exit(_attach(timeout=_parsed(parse_duration, timeout), analyze=not no_analyze,
                                 min_scene=min_scene, transcribe=not no_transcribe, model=model, language=language,
                                 ui=ui, stages=picked, commit_delay=commit_delay))
    if source is None:
        raise SessionError("record needs a SOURCE (a file, a URL, a listener, 'screen' or 'demo'), "
                           "or --attach to analyse what `cht ingest` records")
    raise typer.Exit(_record(source, session_id=session_id, append=append, fast=fast,
                             max_segment=max_segment, min_free=min_free, analyze=not no_analyze,
                             min_scene=min_scene, transcribe=not no_transcribe, model=model, language=language,
                             ui=ui, on_segment=on_segment, stages=picked, commit_delay=commit_delay))


@app.command(help="Record the built-in live source (test pattern + real speech) until Ctrl-C.")
def demo(
    session_id: Optional[str] = typer.Option(None, "--session", help="Name the session."),
    max_segment: str = typer.Option("30m", "--max-segment", help="Start a new segment after this long."),
    no_transcribe: bool = typer.Option(False, "--no-transcribe", help="No live transcript."),
    no_ui: bool = NO_UI,
    port: int = UI_PORT_OPTION,
) -> None:
    raise typer.Exit(_record("demo", session_id=session_id, append=False, fast=False,
                             max_segment=max_segment, min_free="64M", transcribe=not no_transcribe,
                             language="en", ui=UiOptions(not no_ui, UI_HOST, port)))


@app.command(help="Accept pushed streams (RTMP, SRT, MPEG-TS over TCP) and record each client's stream as a "
             "session, relaying it live to viewers, until Ctrl-C / SIGTERM.\n\n\b\nLISTEN forms:\n" + LISTEN_HELP)
def ingest(
    listen: list[str] = typer.Option(..., "--listen", help="Where to accept streams (repeat for several)."),
    grace: str = typer.Option("60s", "--grace", help="A client back within this long continues its session."),
    max_segment: str = typer.Option("30m", "--max-segment", help="Start a new segment after this long."),
    min_free: str = typer.Option("64M", "--min-free", help="Stop a recording cleanly when less space is free."),
    relay_host: str = typer.Option(UI_HOST, "--relay-host", help="Relay address (beyond loopback it needs a token)."),
    relay_port: int = typer.Option(8766, "--relay-port", min=0, max=65535, help="Relay HTTP port (0: any free one)."),
    no_relay: bool = typer.Option(False, "--no-relay", help="No live MPEG-TS relay for viewers."),
    no_analyze: bool = typer.Option(False, "--no-analyze", help="Only record: no keyframes, waveform or transcript."),
    no_transcribe: bool = typer.Option(False, "--no-transcribe", help="No live transcripts (`cht transcribe` later)."),
    stages: Optional[str] = STAGES,
    min_scene: str = MIN_SCENE,
    model: Optional[Path] = MODEL,
    language: Optional[str] = LANGUAGE,
    commit_delay: float = COMMIT_DELAY,
    no_ui: bool = NO_UI,
    host: str = UI_HOST_OPTION,
    port: int = UI_PORT_OPTION,
    token: Optional[str] = typer.Option(None, "--token", envvar="CHT_TOKEN", help="Token for the relay and the web UI "
                                        "(default: generated when either is exposed)."),
    retain: Optional[str] = typer.Option(None, "--retain", help="Hourly, delete sessions last written longer ago "
                                         "(e.g. 30d; see `cht prune`)."),
    max_total: Optional[str] = typer.Option(None, "--max-total", help="Hourly, delete the oldest sessions until "
                                            "the rest fit (e.g. 200G)."),
    on_segment: Optional[str] = ON_SEGMENT,
    queue: Optional[str] = QUEUE,
    queue_creds: Optional[Path] = QUEUE_CREDS,
) -> None:
    from cht.config import IngestOptions

    _queue(queue, queue_creds)
    stages = _chosen_stages(stages, analyze=not no_analyze, transcribe=not no_transcribe)
    from cht.ingest.endpoints import parse_endpoint
    from cht.ingest.relay import Relay
    from cht.ingest.service import LOG, IngestService

    endpoints = [parse_endpoint(spec) for spec in listen]
    ports = [(e.scheme == "srt", e.port) for e in endpoints]
    if len(set(ports)) != len(ports):
        raise SessionError("two --listen URLs use the same port: give each its own")
    options = IngestOptions(grace_s=_parsed(parse_duration, grace))
    record_options = RecordOptions(max_segment_s=_parsed(parse_duration, max_segment),
                                   min_free_bytes=_parsed(parse_size, min_free))
    relay = None if no_relay else Relay(relay_host, relay_port, token)
    web = state = None
    if not no_ui:
        from cht.web.app import UiState
        from cht.web.server import WebServer

        state = UiState(State.data_dir)
        web = WebServer(state, host=host, port=port, token=token)
    from cht.hooks import parse_command

    retention = None
    if retain is not None or max_total is not None:
        from cht.prune import Retention, parse_age

        retention = Retention(State.data_dir, older_than_s=_parsed(parse_age, retain) if retain else None,
                              max_total=_parsed(parse_size, max_total) if max_total is not None else None)
    service = IngestService(State.data_dir, endpoints, options=options, record_options=record_options, relay=relay,
                            live=state.live if state is not None else None, retention=retention,
                            on_segment=parse_command(on_segment) if on_segment is not None else None)
    service.claim()  # another service on this data dir: refused before the model is loaded
    try:
        _log_to(err, State.data_dir / LOG)
        stages, config = _stage_config(analyze=not no_analyze, transcribe=not no_transcribe, model=model,
                                       language=language, min_scene=min_scene, stages=stages,
                                       commit_delay=commit_delay)
    except BaseException:
        service.release()
        raise
    service.analyse(stages, config)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    service.start()
    for endpoint in endpoints:
        err.print(f"listening on {endpoint.label}")
    if relay is not None:
        err.print(f"relay: {relay.url()} (MPEG-TS; ffplay or VLC open it)")
    web = _start_web(web)
    analysed = ", ".join(stages) if stages else "nothing (--no-analyze)"
    err.print(f"every room is analysed here: {analysed}   (Ctrl-C stops the service)")
    while not stop:
        time.sleep(0.2)
    err.print("stopping: finishing the recordings")
    service.stop()
    if web is not None:
        web.stop()


@app.command(help="Analyse a session another process records (or a finished one): keyframes, waveform and "
             "transcript, live, until that recording stops.")
def follow(
    target: str = typer.Argument(..., metavar="ID|DIR", help="A session id in the data dir, or a session dir."),
    stages: str = typer.Option(",".join(("scenes", "waveform", "transcript", "ocr", "speakers")), "--stages",
                               help="Which stages to run, comma-separated: scenes,waveform,transcript,ocr,speakers."),
    min_scene: str = MIN_SCENE,
    model: Optional[Path] = MODEL,
    language: Optional[str] = LANGUAGE,
    commit_delay: float = COMMIT_DELAY,
    no_ui: bool = NO_UI,
    host: str = UI_HOST_OPTION,
    port: int = UI_PORT_OPTION,
    token: Optional[str] = typer.Option(None, "--token", envvar="CHT_TOKEN", help="Web UI token (default: generated when exposed)."),
    queue: Optional[str] = QUEUE,
    queue_creds: Optional[Path] = QUEUE_CREDS,
) -> None:
    from cht.stages import parse_stages
    from cht.watch import WatchedSession

    _queue(queue, queue_creds)
    names = parse_stages(stages)
    session = _session_at(target)
    names, config = _stage_config(analyze=True, transcribe=True, model=model, language=language,
                                  min_scene=min_scene, stages=names, commit_delay=commit_delay)
    bus = ev.EventBus()
    watched = WatchedSession(session, bus, names, config)
    raise typer.Exit(_drive(watched, session, bus, watched.manifest.source, UiOptions(not no_ui, host, port, token)))


def _session_at(target: str) -> Session:
    """A session named by id, or a session dir given by path (a network share, another data dir)."""
    path = Path(target).expanduser()
    if path.is_dir() and (path / "segments").is_dir():
        return Session(path.resolve())
    if "/" in target or path.is_dir():
        raise SessionError(f"{target} is not a session dir (it has no segments/): give a session id or the "
                           "dir `cht record` wrote")
    return Session.open(State.data_dir, target)


def _log_to(console: Console, path: Path) -> None:
    """Log lines on the terminal and in `path` (the ingest service's own log)."""
    from rich.logging import RichHandler

    root = logging.getLogger("cht")
    root.setLevel(logging.INFO)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_file)
    root.addHandler(RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False))


@app.command(help="List the sessions in the data dir (live ones with their transcript lag).")
def sessions() -> None:
    rows = list_sessions(State.data_dir)
    if not rows:
        out.print(f"no sessions in {State.data_dir}")
        return
    lags = _live_lags(State.data_dir, [s for s, _ in rows if s.is_recording()])
    table = Table("id", "started", "duration", "segments", "state", "lag", "source")
    for column in (*table.columns[:4], table.columns[5]):
        column.no_wrap = True
    table.columns[0].min_width = max(len(s.id) for s, _ in rows)
    for session, manifest in rows:
        if manifest is None:
            table.add_row(session.id, "?", "?", "?", "no manifest (cht rebuild)", "", "")
            continue
        lag = lags.get(session.id)
        table.add_row(session.id, manifest.started_at.replace("T", " ")[:19], fmt_time(manifest.duration),
                      str(len(manifest.segments)), manifest.state, "" if lag is None else f"{lag:.0f} s",
                      manifest.source)
    out.print(table)


def _live_lags(data_dir: Path, live: list[Session]) -> dict[str, float]:
    """Transcript lag of each live session: from the ingest service for its rooms, else
    from the recording's own control socket (a silent one is left blank)."""
    from cht.watch import service_answers

    lags: dict[str, float] = {}
    if not live:
        return lags
    status = service_answers(data_dir, timeout=1.0) or {}
    for channel in status.get("channels", []):
        if channel.get("session") and channel.get("transcript_lag") is not None:
            lags[channel["session"]] = channel["transcript_lag"]
    for session in live:
        if session.id in lags:
            continue
        try:
            lag = control_request(session.control_path, "status", timeout=1.0).get("transcript_lag")
        except SessionError:
            continue
        if lag is not None:
            lags[session.id] = lag
    return lags


@app.command(help="Show one session: source, state, segments and gaps on the global clock.")
def info(session_id: str = typer.Argument(..., metavar="ID")) -> None:
    session = Session.open(State.data_dir, session_id)
    manifest = session.current_manifest()
    out.print(f"session  {manifest.id}\nsource   {manifest.source}\nstate    {manifest.state}"
              + (f" ({manifest.reason})" if manifest.reason else "")
              + f"\nstarted  {manifest.started_at}\nduration {fmt_time(manifest.duration)}"
              f" ({manifest.duration:.3f} s)\npath     {session.root}")
    table = Table("segment", "global start", "duration", "run", "size", "started at")
    for seg in manifest.segments:
        table.add_row(Path(seg.file).name, f"{seg.global_start:.3f}", f"{seg.duration:.3f}", str(seg.run),
                      fmt_bytes(seg.bytes), seg.started_at[11:23])
    out.print(table)
    for gap in manifest.gaps:
        out.print(f"gap {gap.start:.3f} – {gap.end:.3f} s ({gap.end - gap.start:.3f} s not recorded)"
                  + (f": {gap.reason}" if gap.reason else ""))


@app.command(help="Re-derive a session's manifest.json from its segment files.")
def rebuild(session_id: str = typer.Argument(..., metavar="ID")) -> None:
    session = Session.open(State.data_dir, session_id)
    if session.is_recording():
        raise SessionError(f"session {session_id} is recording: its manifest is kept live; rebuild it after it stops")
    manifest = session.rebuild()
    _reindex(session)
    out.print(f"rebuilt {session.id}: {manifest.state}, {len(manifest.segments)} segment(s), "
              f"{fmt_time(manifest.duration)}, {len(manifest.gaps)} gap(s)")


@app.command(help="Re-run scene detection, the waveform and slide text (OCR) on a finished session, replacing their files.")
def analyze(
    session_id: str = typer.Argument(..., metavar="ID"),
    min_scene: str = MIN_SCENE,
) -> None:
    scene_options = SceneOptions(min_scene_s=_parsed(parse_duration, min_scene))
    session = Session.open(State.data_dir, session_id)
    if session.is_recording():
        raise SessionError(f"session {session_id} is still recording: its analysis is running live")
    manifest = session.current_manifest()
    from cht.offline import analyze_offline

    from cht.ocr.text import read_ocr

    with _analysing(session), _progress("analysing", manifest.duration) as report, _warnings_on_stderr():
        frames = analyze_offline(session.root, manifest, ev.EventBus(), report, scene_options)
    _reindex(session)
    scenes = sum(1 for f in frames if f.kind in ("scene", "start"))
    texts = sum(1 for s in read_ocr(session.root) if s.lines)
    out.print(f"analysed {session.id}: {scenes} scene(s), {texts} keyframe(s) with text, "
              f"waveform in {session.root / 'audio'}")


@contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """What analysis skipped (a keyframe it cannot read, a fragment that does not decode),
    one line each on stderr; the traceback stays out of the terminal."""

    class OneLine(logging.Formatter):
        def formatException(self, ei) -> str:  # noqa: N802 - logging's name
            return ""

        def formatStack(self, stack_info) -> str:  # noqa: N802
            return ""

    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(OneLine("warning: %(message)s"))
    root = logging.getLogger("cht")
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


@app.command(help="Transcribe what a finished session's transcript is missing (or all of it again, --all).")
def transcribe(
    session_id: str = typer.Argument(..., metavar="ID"),
    redo: bool = typer.Option(False, "--all", help="Transcribe the whole session again, replacing the transcript."),
    model: Optional[Path] = MODEL,
    language: Optional[str] = LANGUAGE,
    queue: Optional[str] = QUEUE,
    queue_creds: Optional[Path] = QUEUE_CREDS,
) -> None:
    _queue(queue, queue_creds)
    from cht.offline import transcribe_session
    from cht.transcribe.model import check_language
    from cht.transcribe.offline import pending
    from cht.transcribe.store import read_spoken

    session = Session.open(State.data_dir, session_id)
    if session.is_recording():
        raise SessionError(f"session {session_id} is still recording: its transcript is growing live")
    manifest = session.current_manifest()
    todo = manifest.duration if redo else sum(b - a for a, b in pending(session.root, manifest))
    if todo <= 0:
        out.print(f"{session.id}: the transcript covers the whole session (--all transcribes it again)")
        return
    language = check_language(language)
    engine = _load_engine(model)
    with _analysing(session), _progress("transcribing", manifest.duration) as report:
        left = transcribe_session(session.root, manifest, engine, redo=redo, language=language, progress=report)
    _reindex(session)
    lines = read_spoken(session.root)
    words = sum(len(line.words) for line in lines)
    out.print(f"transcribed {session.id}: {len(lines)} line(s), {words} word(s)"
              + (f"; {sum(b - a for a, b in left):.0f} s still missing" if left else ""))


@app.command(help='Search every transcript and slide: words, "exact phrases", prefix*, -excluded.')
def search(
    query: str = typer.Argument(..., help='What to find, e.g. \'"try again" fail*\'.'),
    session_id: Optional[str] = typer.Option(None, "--session", help="Only this session."),
    since: Optional[str] = typer.Option(None, "--since", help="Only sessions started since: a date or an age (3d)."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="At most this many hits."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Only what was said (speech) or shown (slide)."),
) -> None:
    if kind not in (None, "speech", "slide"):
        raise SessionError(f"--kind {kind!r}: choose speech or slide")
    if session_id is not None:
        Session.open(State.data_dir, session_id)  # a one-line error for an unknown id
    since_epoch = _parsed(lambda text: parse_since(text, time.time()), since) if since else None
    if parse_query(query).empty:
        err.print('nothing to search for: give a word, a "phrase" or a prefix*')
        return
    index = SearchIndex(State.data_dir)
    try:
        hits = index.search(query, session=session_id, since=since_epoch, limit=limit, kind=kind)
    finally:
        index.close()
    if not hits:
        out.print(f"no match for {query!r}" + ("" if index.path.exists() else " (no index yet: `cht reindex`)"))
        return
    for hit in hits:
        snippet = escape(hit.snippet).replace(MARK_START, "[bold yellow]").replace(MARK_END, "[/]")
        when = f"on slide at {fmt_time(hit.t)}" if hit.kind == "slide" else fmt_time(hit.t)
        who = f"{escape(hit.speaker)}: " if hit.speaker else ""
        out.print(f"[bold]{hit.session}[/] {when}  {who}{snippet}\n  [dim]{ui_url(hit.session, hit.t)}[/]")


@app.command(help='A session\'s speakers: list them; `rename S1 "Ada Lovelace"` names one (everywhere: page, '
             'exports, search); --recluster groups the whole session again (--speakers N: into N).')
def speakers(
    session_id: str = typer.Argument(..., metavar="ID"),
    action: Optional[str] = typer.Argument(None, metavar="[rename LABEL NAME]"),
    label: Optional[str] = typer.Argument(None, hidden=True),
    name: Optional[str] = typer.Argument(None, hidden=True),
    recluster: bool = typer.Option(False, "--recluster", help="Cluster every speech window of the session again."),
    count: Optional[int] = typer.Option(None, "--speakers", help="With --recluster: exactly this many speakers."),
) -> None:
    from cht.speakers import store
    from cht.speakers.labeller import check_recluster, recluster_session

    session = Session.open(State.data_dir, session_id)
    if action not in (None, "rename"):
        raise SessionError(f"{action!r}: the only action is `rename LABEL NAME`")
    if count is not None and not recluster:
        raise SessionError("--speakers goes with --recluster")
    if action == "rename":
        if label is None or name is None:
            raise SessionError('rename needs a label and a name: cht speakers ID rename S1 "Ada Lovelace"')
        store.rename(session.root, label, name)
    elif label is not None:
        raise SessionError(f"unexpected {label!r}: cht speakers ID [rename LABEL NAME] [--recluster]")
    if recluster:
        check_recluster(session.root, count)  # before the lock: a refusal leaves nothing behind
        with _analysing(session):
            recluster_session(session.root, count)
    found = store.read(session.root)
    if not found.speakers:
        out.print(f"{session.id}: no speakers yet")
        return
    for s in found.speakers:
        out.print(f"{s.id}  {fmt_time(s.seconds)}  {escape(s.name) if s.name else '[dim](unnamed)[/]'}")


@app.command(help="Rebuild the search index from every session's transcript.")
def reindex() -> None:
    sessions_count, lines = reindex_all(State.data_dir)
    out.print(f"indexed {lines} transcript line(s) from {sessions_count} session(s)")


@app.command(help="Export a session: subtitles (srt, vtt), text, Markdown notes with the slides, chapters "
             "from slide titles (WebVTT), or JSON.")
def export(
    session_id: str = typer.Argument(..., metavar="ID"),
    fmt: str = typer.Option("md", "--format", "-f", help="srt | vtt | txt | md | json | chapters"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: stdout; md: ID.md)."),
    per_segment: bool = typer.Option(False, "--per-segment", help="Subtitles: one file per segment, on its clock."),
) -> None:
    session = Session.open(State.data_dir, session_id)
    from cht.index.export import export as export_session

    written = export_session(session, fmt.lower(), output, per_segment=per_segment)
    for path in written:
        if path.suffix in (".md", ".srt", ".vtt", ".txt", ".json"):
            err.print(f"wrote {path}")


def _serve(only: str | None, host: str, port: int, token: str | None) -> None:
    from cht.web.app import UiState
    from cht.web.server import WebServer

    state = UiState(State.data_dir, only=only, records=only is None)
    web = WebServer(state, host=host, port=port, token=token, fixed_port=True)
    err.print(f"serving {web.url(only)} (Ctrl-C to stop)")

    def interrupt(*_):
        raise KeyboardInterrupt  # SIGTERM stops as Ctrl-C does: what it records finishes first

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)  # also when started with SIGINT ignored (`cmd &` in a script)
    try:
        web.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if state.records:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the recordings' stop is not interrupted
            state.recordings.stop_all()


@app.command(help="Serve the web timeline of every session in the data dir.")
def serve(
    host: str = typer.Option(UI_HOST, "--host", help="Address (beyond loopback a token is required)."),
    port: int = typer.Option(UI_PORT, "--port", min=1, max=65535),
    token: Optional[str] = typer.Option(None, "--token", envvar="CHT_TOKEN", help="Token (default: generated when exposed)."),
) -> None:
    _serve(None, host, port, token)


@app.command(name="open", help="Serve one session's timeline, read-only, and print its URL.")
def open_session(
    session_id: str = typer.Argument(..., metavar="ID"),
    host: str = typer.Option(UI_HOST, "--host"),
    port: int = typer.Option(UI_PORT, "--port", min=1, max=65535),
    token: Optional[str] = typer.Option(None, "--token", envvar="CHT_TOKEN"),
) -> None:
    Session.open(State.data_dir, session_id)
    _serve(session_id, host, port, token)


@app.command(help="Delete whole sessions, oldest first: those older than --older-than, then more until the "
             "rest fit in --max-total. A session being recorded is never deleted.")
def prune(
    older_than: Optional[str] = typer.Option(None, "--older-than", help="Delete sessions last written longer ago "
                                             "(e.g. 30d, 12h)."),
    max_total: Optional[str] = typer.Option(None, "--max-total", help="Keep all sessions within this size "
                                            "(e.g. 200G)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be deleted."),
) -> None:
    from cht.prune import parse_age, prune as prune_sessions

    if older_than is None and max_total is None:
        raise SessionError("prune needs --older-than AGE (e.g. 30d) or --max-total SIZE (e.g. 200G), or both")
    age = _parsed(parse_age, older_than) if older_than is not None else None
    limit = _parsed(parse_size, max_total) if max_total is not None else None
    gone, seen = prune_sessions(State.data_dir, older_than_s=age, max_total=limit, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for entry in gone:
        out.print(f"{verb} {entry.session.id} ({fmt_bytes(entry.bytes)}, {entry.why})", markup=False)
    kept = [e for e in seen if e not in gone]
    live = sum(1 for e in kept if e.live)
    out.print(f"{verb} {len(gone)} session(s), {fmt_bytes(sum(e.bytes for e in gone))}; kept {len(kept)} "
              f"({fmt_bytes(sum(e.bytes for e in kept))}{f', {live} live' if live else ''})", markup=False)


@app.command(help="Cut FROM–TO of a session's global clock (1:02:03, 90s, 90) into one MP4 with the transcript "
             "as subtitles (and a .vtt beside it).")
def clip(
    session_id: str = typer.Argument(..., metavar="ID"),
    start: str = typer.Argument(..., metavar="FROM"),
    end: str = typer.Argument(..., metavar="TO"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The .mp4 to write (default: ID-FROM-TO.mp4)."),
    exact: bool = typer.Option(False, "--exact", help="Start exactly at FROM (re-encodes the clip) instead of at "
                               "the keyframe before it."),
) -> None:
    from cht.clips import cut, default_name, parse_clock

    session = Session.open(State.data_dir, session_id)
    t0, t1 = _parsed(parse_clock, start), _parsed(parse_clock, end)
    made = cut(session, t0, t1, output or default_name(session.id, t0, t1), exact=exact)
    if made.exact:
        how = (f"the first {made.reencoded_s:.3f} s re-encoded, up to the next keyframe; the rest copied"
               if made.reencoded_s is not None else "re-encoded")
        err.print(f"starts exactly at FROM ({t0:.3f} s; {how})", soft_wrap=True)
    elif made.early_s > 0.0005:
        err.print(f"starts {made.early_s:.3f} s before FROM ({t0:.3f} s), at the keyframe at {made.start:.3f} s "
                  "(--exact: start at FROM)", soft_wrap=True)
    for gap in made.gaps:
        err.print(f"gap: {gap.start:.3f}–{gap.end:.3f} s not recorded ({gap.end - gap.start:.1f} s), "
                  "left out: the parts around it follow each other", soft_wrap=True)
    if t1 > made.end + 0.05:
        err.print(f"TO ({t1:.3f} s) is past what is recorded: the clip ends at {made.end:.3f} s "
                  "(a live session's end is as of its last manifest write, every few seconds)", soft_wrap=True)
    subtitles = f"{made.cues} subtitle cue(s)" if made.cues else "no transcript in this range"
    out.print(f"wrote {made.path} ({made.start:.3f}–{made.end:.3f} s on the session's clock, "
              f"{made.seconds:.3f} s long, {subtitles}) and {made.vtt}", soft_wrap=True)


@app.command(help="Decode speech for recorders that run with --queue URL: one model, chunks from every room, "
             "until Ctrl-C / SIGTERM. Run as many as there are cores or GPUs, on any machines.")
def worker(
    queue: str = typer.Option(..., "--queue", envvar="CHT_QUEUE", metavar="URL",
                              help="The NATS server the recorders publish to (nats://HOST:4222)."),
    queue_creds: Optional[Path] = QUEUE_CREDS,
    model: Optional[Path] = MODEL,
    device: str = typer.Option("cpu", "--device", help="cpu (int8) or cuda (float16)."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for the model (0: every core)."),
    ack_wait: str = typer.Option("60s", "--ack-wait", help="A chunk a dead worker held goes to another after this."),
) -> None:
    import asyncio

    from cht.queue.connect import check_url, probe
    from cht.queue.worker import Worker
    from cht.transcribe.model import SpeechModel, check_model_dir, default_model_dir

    if device not in ("cpu", "cuda"):
        raise SessionError(f"--device {device!r}: use cpu or cuda")
    check_url(queue)
    wait = _parsed(parse_duration, ack_wait)
    asyncio.run(probe(queue, creds=queue_creds))  # a wrong URL or password fails before the model loads
    model_dir = check_model_dir(model) if model is not None else default_model_dir(default_cache_dir())
    speech = SpeechModel(model_dir, threads=threads, device=device)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    runner = Worker(speech, queue, creds=queue_creds, ack_wait_s=wait,
                    report=lambda line: out.print(f"worker: {line}", markup=False, highlight=False))
    out.print(f"worker: {speech.device}, waiting for chunks", markup=False, highlight=False)
    asyncio.run(runner.run())


@app.command(help="Save the picture a running recording shows now as a keyframe.")
def capture(session_id: Optional[str] = typer.Argument(None, metavar="[ID]", help="Default: the one recording now.")) -> None:
    if session_id is None:
        live = [s for s, _ in list_sessions(State.data_dir) if s.is_recording()]
        if not live:
            raise SessionError("no session is recording now: start one with `cht record SOURCE`")
        session = live[-1]
    else:
        session = Session.open(State.data_dir, session_id)
    answer = control_request(session.control_path, "capture")
    if not answer.get("ok"):
        raise SessionError(f"capture failed: {answer.get('error')}")
    out.print(f"captured {session.id} at {fmt_time(answer['t'])} ({answer['file']})")


def main() -> None:
    logging.raiseExceptions = False  # a full disk must not print tracebacks from the log handler
    try:
        code = app(standalone_mode=False)
    except ChtError as exc:
        _fail(str(exc))
    except UsageError as exc:  # a missing argument, a value out of range, an unknown option
        if type(exc).__name__ == "NoArgsIsHelpError":  # plain `cht`: the help it asked for
            out.print(exc.format_message(), markup=False, highlight=False)
            sys.exit(0)
        command = exc.ctx.command_path if exc.ctx else "cht"
        _fail(f"{exc.format_message()} (see `{command} --help`)")
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    """One line on stderr, whatever the message holds (a non-UTF-8 path included), and exit 2."""
    line = " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    err.print(f"cht: error: {line}", soft_wrap=True, markup=False)
    sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
