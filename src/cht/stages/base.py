"""What a stage is: it consumes typed samples from the follower and writes its own files.

After PySceneDetect's `SceneDetector` (a per-frame call and a `post_process` at the end,
never knowing the backend): the follower, not the stage, knows about segments, fragments,
restarts and whether the session is live or finished. A stage declares what it consumes
(`video`, `pcm` or both), is fed each kind in global time order, writes only its own files in
`context.out_dir`, and has `finish()`. A new stage is a module with one class and a line
in `stages/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Literal

from cht import events as ev
from cht.config import SceneOptions
from cht.session import Manifest

if TYPE_CHECKING:
    from cht.analyze.reader import PcmChunk, VideoSample
    from cht.transcribe.engine import SpeechEngine
    from cht.transcribe.worker import TranscribeOptions

Consumes = Literal["video", "pcm"]


@dataclass
class StageContext:
    """Where a stage writes and whom it tells."""

    session_id: str
    session_dir: Path  # the session being followed
    out_dir: Path  # where the stage writes: the session dir, or a temp dir swapped in later
    bus: ev.EventBus
    manifest: Callable[[], Manifest]  # the freshest manifest (live: the recorder's)
    start_over: bool = False  # the follower starts from the first segment: old results go


@dataclass
class StageConfig:
    """What the stages of one run need beyond their context."""

    scenes: SceneOptions = field(default_factory=SceneOptions)
    engine: SpeechEngine | None = None  # the process's speech engine (None: no transcript)
    transcribe: TranscribeOptions | None = None  # None: the live defaults
    transcript_name: str = "transcript.jsonl"  # `cht transcribe --all` writes beside the old one


class Stage:
    name: ClassVar[str]
    consumes: ClassVar[frozenset[Consumes]]
    video_fps: float = 0.0  # video samples a second this stage wants at most

    def on_video(self, sample: VideoSample) -> None:
        """A decoded picture (global time `sample.t`)."""

    def on_pcm(self, chunk: PcmChunk) -> None:
        """16 kHz mono int16 PCM starting at global time `chunk.t`."""

    def finish(self) -> None:
        """The media has ended (or the live run stopped): write what is left."""

    def abandon(self) -> None:
        """A second stop request: leave unfinished work for a later run, quickly."""

    def status(self) -> dict:
        """What the status socket and the pages show of this stage."""
        return {}
