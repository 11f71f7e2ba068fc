"""Transcribe a finished session: what is missing (after an interrupted stop, a crash or
`--no-transcribe`), or all of it again.

The same chunker and worker as live, fed as fast as the audio decodes, with longer chunks
(more context, fewer model calls) and no provisional texts.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable

from cht import events as ev
from cht.analyze.reader import SegmentDecoder
from cht.session import Manifest
from cht.transcribe.chunker import ChunkPolicy
from cht.transcribe.model import SpeechModel
from cht.transcribe.store import TRANSCRIPT, TranscriptStore, covered, missing, read_lines
from cht.transcribe.worker import TranscribeOptions, Transcriber

OFFLINE_POLICY = ChunkPolicy(min_s=8.0, max_s=25.0, pause_s=0.3)


def media_spans(manifest: Manifest) -> list[tuple[float, float]]:
    return [(s.global_start, s.global_end) for s in manifest.segments]


def pending(session_root: Path, manifest: Manifest) -> list[tuple[float, float]]:
    """Recorded stretches the transcript does not cover yet."""
    return missing(media_spans(manifest), covered(read_lines(session_root / TRANSCRIPT)))


def resume_transcriber(session_root: Path, model: SpeechModel, bus: ev.EventBus,
                       options: TranscribeOptions, name: str = TRANSCRIPT) -> Transcriber:
    """A transcriber that continues a session's transcript: what it covers is not fed again,
    and new chunks are numbered after the last."""
    store = TranscriptStore(session_root, name)
    lines = store.read()
    return Transcriber(model, store, bus, options, done=covered(lines),
                       first_chunk=max((line.chunk for line in lines), default=-1) + 1)


def finish_index(session_root: Path, manifest: Manifest, name: str = TRANSCRIPT) -> list[tuple[float, float]]:
    """Write the index with what is still missing; return that."""
    store = TranscriptStore(session_root, name)
    lines = store.read()
    left = missing(media_spans(manifest), covered(lines))
    store.write_index(lines, left)
    return left


def transcribe_session(session_root: Path, manifest: Manifest, model: SpeechModel, *, redo: bool = False,
                       progress: Callable[[float], None] | None = None,
                       bus: ev.EventBus | None = None) -> list[tuple[float, float]]:
    """Transcribe what is missing (or everything, `redo`); returns what is still missing.
    A redo writes a new transcript beside the old and swaps it in only when complete."""
    bus = bus or ev.EventBus()
    name = ".transcript.redo.jsonl" if redo else TRANSCRIPT
    if redo:
        (session_root / name).unlink(missing_ok=True)
    options = TranscribeOptions(OFFLINE_POLICY, provisional_every_s=None, max_queue_s=120.0, beam_size=5,
                                live_index=False)
    transcriber = resume_transcriber(session_root, model, bus, options, name)
    transcriber.start()
    todo = missing(media_spans(manifest), transcriber.done)
    for segment in manifest.segments:
        if not any(a < segment.global_end and b > segment.global_start for a, b in todo):
            continue
        decoder = SegmentDecoder(session_root / segment.file, segment.global_start, video_fps=1.0, kinds=("audio",))
        for pcm in itertools.chain(decoder.poll(), decoder.finish()):
            transcriber.feed(pcm)
            if progress:
                progress(pcm.t)
    transcriber.stop()
    if redo:
        os.replace(session_root / name, session_root / TRANSCRIPT)
    return finish_index(session_root, manifest)

