"""Shared test helpers: media generated with the real ffmpeg (lavfi), the real `cht`
command run as a subprocess, and small polling utilities."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from hypothesis import settings

from cht.media.ffmpeg import ffmpeg_exe

CHT = [sys.executable, "-m", "cht.cli"]

# Hypothesis: in CI (CI set) the examples are derived from each test's source, so a failure
# there fails the same way on a laptop; elsewhere they are random, and a failure prints the
# @reproduce_failure blob that replays it.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def make_media(path: Path, seconds: float, *, video: bool = True, audio: bool = True,
               size: str = "640x360", rate: int = 30, gop: int = 30) -> Path:
    """A test file: a moving pattern with a frame counter (every frame unique) and a tone."""
    args = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f=440:d={seconds}"]
    if video:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac"]
    subprocess.run([*args, str(path)], check=True)
    return path


def part(path: Path, seconds: float, size: str, rate: int, offset: float = 0.0, gop: int = 30) -> Path:
    """MPEG-TS with timestamps starting at `offset` (so parts follow on as one stream would)."""
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
                    "-f", "lavfi", "-i", f"testsrc2=s={size}:r=30:d={seconds}",
                    "-f", "lavfi", "-i", f"sine=f=440:r={rate}:d={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-keyint_min", str(gop),
                    "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", str(rate),
                    "-output_ts_offset", str(offset), "-f", "mpegts", str(path)], check=True)
    return path


def send_paced(sock, path: Path, seconds: float) -> None:
    """Send a file at its own pace (bytes spread evenly over its duration), in TS packets."""
    data = path.read_bytes()
    step = 188 * 40
    start = time.monotonic()
    for i in range(0, len(data), step):
        due = start + seconds * i / len(data)
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        sock.sendall(data[i:i + step])


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def rss_mib(pid: int | str = "self", field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), in MiB. A process that
    has ended has no memory lines left (a zombie): ProcessLookupError, as for one that is gone."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise ProcessLookupError(f"no {field} for process {pid}: it has ended")


def listening(port: int, udp: bool = False) -> bool:
    """True once some process listens on this TCP port, or has bound this UDP port (read from
    /proc: connecting to an ffmpeg listener would use up its one client)."""
    tables, state = (("/proc/net/udp", "/proc/net/udp6"), "07") if udp else (("/proc/net/tcp", "/proc/net/tcp6"), "0A")
    for table in tables:
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, cmdline) of the direct children of `pid`, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append((int(entry.name), cmd))
        except (OSError, ValueError, IndexError):
            continue
    return out


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None once it is gone (or a
    zombie): with the pid, it names one process even if the pid is reused later."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start) of every process below `pid` now, children first: call it while `pid`
    still runs (once it exits its children are re-parented and no longer look like its)."""
    out, todo = [], [pid]
    while todo:
        for child, _ in children(todo.pop()):
            start = process_start(child)
            if start is not None:
                out.append((child, start))
                todo.append(child)
    return out


def still_running(processes: list[tuple[int, int]]) -> list[int]:
    """The pids of `processes` (from `descendants`) still running."""
    return [pid for pid, start in processes if process_start(pid) == start]


def recorder_pid(cht_pid: int) -> int | None:
    for pid, cmd in children(cht_pid):
        if "seg_%05d.mp4" in cmd:
            return pid
    return None


def decode_fully(path: Path) -> dict[str, int]:
    """Decode every packet of every stream; raises if any part is broken."""
    counts: dict[str, int] = {}
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


class Cht:
    """Runs the real `cht` CLI against a temporary data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "CHT_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*CHT, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*CHT, *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def session_dir(self, session_id: str) -> Path:
        return self.data_dir / "sessions" / session_id

    def manifest(self, session_id: str) -> dict:
        return json.loads((self.session_dir(session_id) / "manifest.json").read_text())

    def sessions(self) -> list[str]:
        base = self.data_dir / "sessions"
        return sorted(p.name for p in base.iterdir()) if base.exists() else []

    @staticmethod
    def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> tuple[int, str, str]:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err


@pytest.fixture
def cht(tmp_path: Path) -> Cht:
    return Cht(tmp_path / "data")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")
