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
            f"{fmt_bytes(self.bytes)} · restarts {self.restarts} · frames {self.keyframes}",
            style="bold red" if self.state == "recording" else "",
        )
