"""What a session's transcript covers and misses, and a transcriber that continues it
(after an interrupted stop, a crash, `--no-transcribe` or `--append`)."""

from __future__ import annotations

from pathlib import Path

from cht import events as ev
from cht.session import Manifest
from cht.transcribe.engine import SpeechEngine
from cht.transcribe.store import TRANSCRIPT, TranscriptStore, covered, missing, read_lines
from cht.transcribe.worker import TranscribeOptions, Transcriber


def media_spans(manifest: Manifest) -> list[tuple[float, float]]:
    return [(s.global_start, s.global_end) for s in manifest.segments]


def pending(session_root: Path, manifest: Manifest) -> list[tuple[float, float]]:
    """Recorded stretches the transcript does not cover yet."""
    return missing(media_spans(manifest), covered(read_lines(session_root / TRANSCRIPT)))


def resume_transcriber(session_root: Path, engine: SpeechEngine, bus: ev.EventBus,
                       options: TranscribeOptions, name: str = TRANSCRIPT) -> Transcriber:
    """A transcriber that continues a session's transcript: what it covers is not fed again,
    and new chunks are numbered after the last."""
    store = TranscriptStore(session_root, name)
    lines = store.read()
    return Transcriber(engine, store, bus, options, done=covered(lines),
                       first_chunk=max((line.chunk for line in lines), default=-1) + 1)


def finish_index(session_root: Path, manifest: Manifest, name: str = TRANSCRIPT) -> list[tuple[float, float]]:
    """Write the index with what is still missing; return that."""
    store = TranscriptStore(session_root, name)
    lines = store.read()
    left = missing(media_spans(manifest), covered(lines))
    store.write_index(lines, left)
    return left
