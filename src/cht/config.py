"""Settings with their defaults in one place. Flags and environment override them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DATA_DIR_ENV = "CHT_DATA_DIR"
CACHE_DIR_ENV = "CHT_CACHE_DIR"


def default_data_dir() -> Path:
    """The data dir: $CHT_DATA_DIR, else the per-user data dir of the platform."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("cht", appauthor=False))


def default_cache_dir() -> Path:
    """Where the joined speech model lives: $CHT_CACHE_DIR, else the per-user cache dir
    (shared by every data dir, and safe to delete)."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("cht", appauthor=False))


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (what may go without a token or key)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


UI_HOST = "127.0.0.1"
UI_PORT = 8765


def ui_url(session_id: str, t: float | None = None, host: str = UI_HOST, port: int = UI_PORT) -> str:
    """The web UI's address of a session, at a moment if given."""
    return f"http://{host}:{port}/session/{session_id}" + (f"?t={t:.2f}" if t is not None else "")


def parse_since(text: str, now: float) -> float:
    """'2026-11-01', '2026-11-01T09:30', or an age ('3d', '12h', '90m') -> epoch seconds."""
    from datetime import datetime

    value = text.strip()
    ages = {"d": 86400, "h": 3600, "m": 60}
    if value[-1:].lower() in ages and value[:-1].replace(".", "", 1).isdigit():
        return now - float(value[:-1]) * ages[value[-1].lower()]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--since {text!r}: give a date (2026-11-01), a time (2026-11-01T09:30) "
                         "or an age (3d, 12h, 90m)") from None
    return moment.timestamp() if moment.tzinfo else moment.astimezone().timestamp()


@dataclass
class RecordOptions:
    """How a recording runs."""

    max_segment_s: float = 1800.0  # seconds: a segment rotates (seamlessly) after this long
    fragment_s: float = 0.5  # seconds of media per fMP4 fragment: the most a kill -9 can lose, and
    # what audio waits before analysis sees it (1 s fragments: half a second more on each word)
    watchdog_s: float = 0.25  # seconds between checks that the recorder is alive
    tick_s: float = 1.0  # seconds between live ticks (duration updates, status line)
    manifest_every_s: float = 5.0  # seconds between live manifest writes (other processes read it)
    fast: bool = False  # file sources: record as fast as possible instead of at real pace
    min_free_bytes: int = 64 * 1024 * 1024  # bytes: stop cleanly when the data dir has less free
    first_media_timeout_s: float = 20.0  # seconds a pulled source may take to deliver media
    stop_timeout_s: float = 10.0  # seconds the recorder gets to finish its last fragment on stop


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def _split_number(text: str) -> tuple[float, str]:
    text = text.strip().lower()
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz ")
    try:
        value = float(digits)
    except ValueError:
        raise ValueError(text) from None
    return value, text[len(digits):].strip()


def parse_duration(text: str) -> float:
    """'90', '90s', '30m', '1.5h' -> seconds (> 0)."""
    try:
        value, unit = _split_number(text)
        seconds = value * _DURATION_UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 30m or 1h") from None
    if not 0 < seconds <= 7 * 24 * 3600:
        raise ValueError(f"{text!r} is out of range: give a duration between 1s and 7 days")
    return seconds


def parse_size(text: str) -> int:
    """'0', '512k', '64M', '2G' -> bytes (>= 0)."""
    try:
        value, unit = _split_number(text)
        size = int(value * _SIZE_UNITS[unit])
    except (ValueError, KeyError):
        raise ValueError(f"{text!r} is not a size: use e.g. 0, 512k, 64M or 2G") from None
    if size < 0 or size > 2**50:
        raise ValueError(f"{text!r} is out of range")
    return size


@dataclass
class IngestOptions:
    """How `cht ingest` treats its clients."""

    grace_s: float = 60.0  # seconds a client may be gone and come back into the same session
    handshake_timeout_s: float = 5.0  # seconds a new connection gets to prove it is a publisher
    stall_timeout_s: float = 30.0  # seconds a publishing client may send nothing before it is dropped
    max_pending: int = 32  # connections per port still proving themselves; more are closed at once


@dataclass
class SceneOptions:
    """How the scene / slide-change detector looks at frames (see analyze/scenes.py)."""

    sample_fps: float = 4.0  # frames per second looked at (the rest are decoded, never converted)
    width: int = 320  # pixels: frames are compared as grey images this wide, each pixel an area mean
    block: int = 2  # pixels of that image: the grid cell (160×90 cells at 16:9, whatever the source size)
    min_level: float = 12.0  # grey levels: the least a cell must move by, however clean the stream
    noise_factor: float = 4.0  # a cell changes when it moves by this many times the measured noise
    noise_share: float = 0.5  # a cell moving by less than this share of its own contrast may be noise
    noise_cells: int = 200  # cells with detail a sample pair needs to measure the noise (1.4 % of the grid)
    noise_window: int = 64  # sample pairs whose median noise sets the threshold (16 s at 4 fps)
    settle_s: float = 0.5  # seconds a cell must stay still before it counts towards a slide change
    min_cells: int = 3  # cells of new content that make a change (2-4 characters cover more)
    absorb_s: float = 2.0  # seconds after which smaller settled leftovers are accepted silently
    reversal_s: float = 1.0  # seconds: a cell that moves back within this is live video, a cursor or a pointer
    live_hold_s: float = 2.0  # seconds a cell stays live after such a reversal (two within it: video)
    periodic_s: float = 3.0  # seconds: a reversal with none before it this long is a pointer's trail
    trail_s: float = 0.75  # seconds: a trail this close in time to a small change marks it as the pointer
    trail_reach: int = 4  # cells: how far around a small change a trail is looked for (at least)
    pointer_cells: int = 6  # cells: the largest a pointer can be (6 rows = 6.7 % of the height, 72 px at 1080p)
    video_rate: float = 0.25  # share of samples a cell moved in, lately, that marks a video region
    video_tau_s: float = 8.0  # seconds: the memory of that share (a webcam is marked within 2.3 s)
    video_margin: int = 4  # cells: video regions are boxes on a grid of this many cells, one tile wider
    camera_share: float = 0.5  # share of the picture that is live video above which only cuts count (a camera)
    cut_fraction: float = 0.5  # share of cells changing at once that is a hard cut
    min_scene_s: float = 2.0  # seconds: changes closer than this to the last one are not new scenes
    thumb_width: int = 320  # pixels: width of the thumbnail saved beside each keyframe
