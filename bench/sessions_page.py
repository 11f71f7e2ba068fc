"""The sessions page of an institution's archive: `GET /api/sessions` over many long sessions.

Every row shows a session's word count (from `transcript/index.json`) and its first thumbnail
(from `frames.jsonl`). With hundreds of day-long sessions those files are megabytes each, and
the page asks for the list again whenever it is opened. Builds `--sessions` finished sessions
of `--hours` of lecture each (a transcript index and a frame log at a live lecture's rates,
from `long_session.lecture_lines`), serves them with `cht serve` on loopback, and times the
request over a real socket: the first request, then the median of `--runs` more (the files
unchanged, as in an archive).

    python bench/sessions_page.py [--sessions 200] [--hours 8] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from long_session import lecture_lines

from cht.session import Manifest, atomic_write_json
from cht.transcribe.store import TranscriptIndex

SCENES_PER_HOUR = 120  # a slide change every 30 s


def build(data: Path, sessions: int, hours: float) -> None:
    """One session's files written once, then copied under `sessions` ids."""
    lines = lecture_lines(int(hours * 60 * 30))
    model = data / "model-session"
    (model / "transcript").mkdir(parents=True)
    TranscriptIndex(lines).write(model, [])
    frames = [{"t": k * 30.0, "kind": "scene" if k else "start", "file": f"frames/{k:06d}.jpg",
               "thumb": f"frames/{k:06d}.thumb.jpg", "score": 0.5} for k in range(int(hours * SCENES_PER_HOUR))]
    (model / "frames.jsonl").write_text("".join(json.dumps(f) + "\n" for f in frames))
    for n in range(sessions):
        root = data / "sessions" / f"20260101-{n:06d}"
        (root / "transcript").mkdir(parents=True)
        for name in ("transcript/index.json", "frames.jsonl"):
            os.link(model / name, root / name)
        atomic_write_json(root / "manifest.json", Manifest(root.name, "lecture", "stopped",
                                                           started_at="2026-01-01T09:00:00Z").to_dict())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[float, list]:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        body = json.loads(response.read())
    return time.perf_counter() - began, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        build(data, opts.sessions, opts.hours)
        index_mb = (data / "model-session" / "transcript" / "index.json").stat().st_size / 1e6
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "cht.cli", "--data-dir", str(data), "serve",
                                   "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            line = server.stdout.readline()
            while "http://" not in line:  # cht serve prints the page's URL once it listens
                if not line:
                    raise SystemExit("cht serve exited before it printed its URL")
                line = server.stdout.readline()
            url = f"http://127.0.0.1:{port}/api/sessions"
            for _ in range(300):  # the URL is printed just before the server listens
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    time.sleep(0.05)
            first, rows = get(url)
            assert len(rows) == opts.sessions and all(r["words"] > 0 and r["thumb"] for r in rows), rows[:2]
            again = statistics.median(get(url)[0] for _ in range(opts.runs))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{opts.sessions} sessions of {opts.hours:g} h (index {index_mb:.1f} MB each), "
          f"machine: {os.cpu_count()} cores, {platform.machine()}\n")
    print("| sessions | hours each | first request s | next requests s (median) |")
    print("|---|---|---|---|")
    print(f"| {opts.sessions} | {opts.hours:g} | {first:.3f} | {again:.3f} |")


if __name__ == "__main__":
    main()
