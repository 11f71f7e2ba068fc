"""Typed events on a small in-process bus.

The lifecycle publishes; the CLI, the web UI and tests subscribe. Every event carries a
sequence number (so a client that reconnects can ask for what it missed) and, where it
has one, a time on the session's global clock in seconds.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from cht.ocr.text import SlideText
    from cht.transcribe.store import TranscriptLine

log = logging.getLogger(__name__)


@dataclass
class Event:
    seq: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict:
        return {"type": self.name, **asdict(self)}


@dataclass
class SessionStarted(Event):
    session_id: str
    source: str
    path: str


@dataclass
class WentLive(Event):
    t: float


@dataclass
class LiveTick(Event):
    t: float


@dataclass
class DurationChanged(Event):
    duration: float
    segment: int
    bytes: int


@dataclass
class SegmentStarted(Event):
    index: int
    file: str
    global_start: float


@dataclass
class RecorderRestarted(Event):
    index: int
    reason: str
    restarts: int


@dataclass
class ManifestUpdated(Event):
    segments: int
    duration: float
    state: str


@dataclass
class SceneDetected(Event):
    t: float
    file: str
    thumb: str
    score: float
    kind: str  # start | scene | manual


@dataclass
class SlideTextRead(Event):
    slide: SlideText  # a keyframe's text lines and title, as ocr.jsonl holds it


@dataclass
class WaveformUpdated(Event):
    samples_per_pixel: int  # the zoom level
    start: int  # index of the first new pixel
    data: list[int]  # min, max pairs of the new pixels only


@dataclass
class TranscriptSegments(Event):
    lines: list[TranscriptLine]
    final: bool  # False: a provisional hypothesis for a chunk still being spoken


@dataclass
class TranscriptLag(Event):
    lag_s: float  # audio received but not yet final text, seconds
    queued_s: float  # of which closed chunks waiting for the model
    draining: bool  # the recording has stopped; the rest is being transcribed


@dataclass
class Warning(Event):  # noqa: A001 - a session warning, shown to the user
    message: str


@dataclass
class SessionStopped(Event):
    state: str
    reason: str
    duration: float


Listener = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out with sequence numbers and a short replay buffer.

    Listeners see every event in sequence order, run in a publisher's thread and must be quick;
    one that raises is logged and does not stop the others. Numbering and delivery were two
    steps: two threads publishing at once could deliver 102 before 101, and a page's stream,
    which skips what it has seen by number, would lose 101 (the likely reason a capture's text
    never reached the page in tests/test_ocr.py, once in a full suite). A thread that publishes
    while another is delivering leaves its event to that one, which delivers it next. The replay
    buffer only bridges a page's reconnect (a page away longer is told to resync and reloads
    from the files): 2,000 events are about a minute of a live session (~27 a second, mostly
    waveform), ~0.6 MiB. It held 10,000, and filling them took ~3 MiB over a session's first 6
    minutes (tracemalloc).
    """

    def __init__(self, history: int = 2_000) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._listeners: list[Listener] = []
        self._history: deque[Event] = deque(maxlen=history)
        self._undelivered: deque[Event] = deque()
        self._delivering = False

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: Event) -> Event:
        with self._lock:
            self._seq += 1
            event.seq = self._seq
            self._history.append(event)
            self._undelivered.append(event)
            if self._delivering:
                return event  # the thread delivering delivers it, after the ones before it
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._undelivered:
                        self._delivering = False  # in the same hold: a publisher after this delivers its own
                        return event
                    next_event = self._undelivered.popleft()
                    listeners = list(self._listeners)
                for listener in listeners:
                    try:
                        listener(next_event)
                    except Exception:
                        log.exception("event listener failed on %s", next_event.name)
        except BaseException:  # a listener's KeyboardInterrupt, say: the next publisher delivers the rest
            with self._lock:
                self._delivering = False
            raise

    @property
    def last_seq(self) -> int:
        return self._seq

    def since(self, seq: int) -> list[Event]:
        """Events after `seq` still in the replay buffer, oldest first."""
        with self._lock:
            return [e for e in self._history if e.seq > seq]
