"""Finished sessions, followed to the end of their files: `cht analyze` and `cht transcribe`.

The same follower and stages as a live recording, read as fast as the files decode; the
results replace the old ones only when complete, so an interrupted run changes nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from cht import events as ev
from cht.analyze.pipeline import DERIVED, clear_derived
from cht.analyze.scenes import FrameRecord, read_frames
from cht.config import SceneOptions
from cht.follower import Follower
from cht.session import Manifest
from cht.stages import StageConfig, StageContext, build_stages
from cht.transcribe.chunker import ChunkPolicy
from cht.transcribe.engine import SpeechEngine
from cht.transcribe.offline import finish_index
from cht.transcribe.store import TRANSCRIPT
from cht.transcribe.worker import TranscribeOptions

# Catch-up: no one waits, so no steps; chunks of 12-18 s get 15-20 s windows, which cost the
# encoder half as much per audio second as the 30 s window Whisper was trained on (2 cores,
# int8: 0.42 s for 20 s, 1.21 s for 30 s), so the engine batches them (one window size per
# batch); the repeat guard catches the loops long windows invite. 12-18 s (with each window
# encoded on its own) against 18-28 s: 12.2x against 8.0x real time on 126 s of espeak
# paragraphs, 12.9x against 12.6x on 196 s of real clips (bench/README, `bench/transcribe.py
# --runs catch-up --tile 3`). Beam 3, as live finals: greedy read the espeak lecture 14.4 %
# wrong, 1-1.5 points worse than live; beam 3 11.2 %, at 0.26-0.51x faster-whisper's own
# time once a loop is decoded again greedy first (`SpeechModel._again`; bench/README, twelfth pass).
OFFLINE_POLICY = ChunkPolicy(min_s=12.0, max_s=18.0, pause_s=0.3)
OFFLINE_TRANSCRIBE = TranscribeOptions(OFFLINE_POLICY, step_s=None, max_queue_s=120.0, beam_size=3,
                                       live_index=False)


def analyze_offline(session_dir: Path, manifest: Manifest, bus: ev.EventBus | None = None,
                    progress: Callable[[float], None] | None = None,
                    options: SceneOptions | None = None) -> list[FrameRecord]:
    """Re-run the scenes, waveform and OCR stages on a finished session, replacing their files only
    at the end (an interrupted run leaves the previous results as they were); manual captures stay."""
    bus = bus or ev.EventBus()
    work = session_dir / ".analyze.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    context = StageContext(manifest.id, session_dir, work, bus, lambda: manifest)
    stages = build_stages(("scenes", "waveform", "ocr"), context, StageConfig(scenes=options or SceneOptions()))
    Follower(session_dir, bus, stages, lambda: manifest.segments).run_to_end(progress)
    clear_derived(session_dir, keep_into=work)
    for name in DERIVED:
        if (work / name).exists():
            os.replace(work / name, session_dir / name)
    shutil.rmtree(work, ignore_errors=True)
    return read_frames(session_dir)


def transcribe_session(session_dir: Path, manifest: Manifest, engine: SpeechEngine, *, redo: bool = False,
                       language: str | None = None, progress: Callable[[float], None] | None = None,
                       bus: ev.EventBus | None = None) -> list[tuple[float, float]]:
    """Transcribe what is missing (or everything, `redo`); returns what is still missing.
    A redo writes a new transcript beside the old and swaps it in only when complete."""
    bus = bus or ev.EventBus()
    name = ".transcript.redo.jsonl" if redo else TRANSCRIPT
    if redo:
        (session_dir / name).unlink(missing_ok=True)
    options = TranscribeOptions(**{**OFFLINE_TRANSCRIBE.__dict__, "language": language})
    context = StageContext(manifest.id, session_dir, session_dir, bus, lambda: manifest)
    config = StageConfig(engine=engine, transcribe=options, transcript_name=name)
    stage = build_stages(("transcript",), context, config)
    Follower(session_dir, bus, stage, lambda: manifest.segments).run_to_end(progress)
    if redo:
        os.replace(session_dir / name, session_dir / TRANSCRIPT)
    return finish_index(session_dir, manifest)
