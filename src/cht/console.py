"""Terminal view of a recording: event lines, and a live status line on a terminal."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from cht import events as ev


def fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


class RecordingView:
    """Subscribes to the bus; prints what matters and keeps a status line up to date."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.duration = 0.0
        self.segment = 0
        self.bytes = 0
        self.restarts = 0
        self.keyframes = 0
        self.lag = 0.0
        self.draining = False
        self.state = "starting"
        self._live: Live | None = None

    def __enter__(self) -> "RecordingView":
        if self.console.is_terminal:
            self._live = Live(self._status(), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.SessionStarted():
                self.state = "recording"
                self.console.print(f"recording session [bold]{event.session_id}[/] from {event.source}")
                self.console.print(f"  {event.path}")
            case ev.WentLive():
                self.console.print("live")
            case ev.SegmentStarted():
                self.segment = event.index
                self.console.print(f"segment {event.index} at {fmt_time(event.global_start)} ({event.file})")
            case ev.RecorderRestarted():
                self.restarts = event.restarts
                self.console.print(f"[yellow]recorder restarted[/] into segment {event.index}: {event.reason}")
            case ev.SceneDetected():
                self.keyframes += 1
                self.console.print(f"keyframe ({event.kind}) at {fmt_time(event.t)}")
            case ev.TranscriptSegments(final=True):
                for line in event.lines:
                    self.console.print(f"[dim]{fmt_time(line.start)}[/] {line.text}", markup=True)
            case ev.TranscriptLag():
                self.lag = event.lag_s
                if event.draining and not self.draining and event.lag_s >= 1:
                    self.draining = True
                    self.console.print(f"transcribing the last {event.lag_s:.0f} s "
                                       "(Ctrl-C again to leave it for `cht transcribe`)")
            case ev.Warning():
                self.console.print(f"[yellow]warning:[/] {event.message}")
            case ev.DurationChanged():
                self.duration, self.bytes = event.duration, event.bytes
            case ev.SessionStopped():
                self.state = event.state
                colour = "green" if event.state == "stopped" else "red"
                self.console.print(
                    f"[{colour}]{event.state}[/] after {fmt_time(event.duration)} of media: {event.reason}"
                )
        if self._live is not None:
            self._live.update(self._status())

    def _status(self) -> Text:
        elapsed = time.monotonic() - self.started
        return Text(
            f"● {self.state} {fmt_time(elapsed)} · media {fmt_time(self.duration)} · seg {self.segment} · "
            f"{fmt_bytes(self.bytes)} · restarts {self.restarts} · frames {self.keyframes} · "
            f"transcript lag {self.lag:.0f} s",
            style="bold red" if self.state == "recording" else "",
        )
