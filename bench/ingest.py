"""`cht ingest` under load: 4 concurrent 1280x720 30 fps pushes on this machine.

CPU per stream for ingest + recording: the `cht ingest` process and every process under it
(the recorders; the SRT listeners), from /proc, over a window in which all four streams are
live, divided by the window and by 4. The pushing clients (ffmpeg -re) are not counted.

Relay latency: one of the MPEG-TS streams is pushed by this script itself, paced by its
video timestamps, noting when each frame leaves; a viewer of the relay's
http://…/live/SESSION.ts notes when each frame arrives. Frames are matched by their sizes
(the relay stream-copies, so the sequence is the same), and the difference is the time a
frame spends in ingest → recorder → relay.

    python bench/ingest.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cht.media.ffmpeg import ffmpeg_exe

TICK = os.sysconf("SC_CLK_TCK")
STREAMS = 4
CHT = [sys.executable, "-m", "cht.cli"]


def make_source(path: Path, seconds: int, container: str) -> None:
    subprocess.run([
        ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=s=1280x720:r=30:d={seconds}",
        "-f", "lavfi", "-i", f"sine=f=440:d={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", "3M", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-f", container, str(path),
    ], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and every live process under it."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK
    total = 0.0
    for pid, seconds in cpu.items():
        p = pid
        while p and p != root:
            p = parents.get(p, 0)
        if p == root:
            total += seconds
    return total


# -- MPEG-TS: video frames and their sizes ---------------------------------------------

class VideoFrames:
    """Feed TS bytes; collects (ES size, first-packet time) per video PES (stream id 0xE0)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, float, int]] = []  # (size, time, pts)
        self.bytes = 0
        self._pid: int | None = None
        self._size = 0
        self._start: float | None = None  # when the frame being read began
        self._pts = 0
        self._rest = b""

    def feed(self, data: bytes, now: float) -> None:
        data = self._rest + data
        whole = len(data) - len(data) % 188
        self._rest = data[whole:]
        for i in range(0, whole, 188):
            pkt = data[i:i + 188]
            if pkt[0] != 0x47:
                continue
            pusi, pid = pkt[1] & 0x40, ((pkt[1] & 0x1F) << 8) | pkt[2]
            afc, pos = (pkt[3] >> 4) & 3, 4
            if afc & 2:
                pos += 1 + pkt[4]
            if not afc & 1 or pos >= 188:
                continue
            payload = pkt[pos:]
            if pusi and payload[:3] == b"\0\0\1" and payload[3] == 0xE0:
                if self._pid is None:
                    self._pid = pid
                if pid == self._pid:
                    self._close()
                    header = 9 + payload[8]
                    p = payload[9:14]
                    self._pts = ((p[0] >> 1) & 7) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
                    self._start, self._size = now, len(payload) - header
                    continue
            if pid == self._pid and self._start is not None:
                self._size += len(payload)

    def _close(self) -> None:
        if self._start is not None:
            self.frames.append((self._size, self._start, self._pts))


def paced_push(path: Path, url: str, sent: VideoFrames) -> None:
    """Send a TS file over TCP at the pace of its video timestamps, noting each frame's departure."""
    data = path.read_bytes()
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as sock:
        t0, pts0 = time.monotonic(), None
        probe = VideoFrames()
        for i in range(0, len(data) - len(data) % 188, 188 * 7):
            chunk = data[i:i + 188 * 7]
            probe.feed(chunk, 0.0)
            if probe._start is not None:
                pts = probe._pts
                pts0 = pts if pts0 is None else pts0
                wait = t0 + (pts - pts0) / 90000 - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            sock.sendall(chunk)
            sent.feed(chunk, time.monotonic())
        sent._close()


def watch(url: str, seen: VideoFrames, stop: threading.Event) -> None:
    host_port, path = url.split("//")[1].split("/", 1)
    host, port = host_port.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        if not head.startswith(b"HTTP/1.0 200"):
            print(f"relay answered {head.splitlines()[0]!r} for {url}", file=sys.stderr)
            return
        sock.settimeout(1.0)
        while not stop.is_set():
            try:
                data = sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not data:
                break
            seen.bytes += len(data)
            seen.feed(data, time.monotonic())


def relay_latencies(sent: VideoFrames, seen: VideoFrames) -> list[float]:
    """Align the relay's frames to the sent ones by their sizes; each arrival minus departure."""
    a, b = [s for s, _, _ in sent.frames], [s for s, _, _ in seen.frames]
    n = 30
    if len(b) < n:
        return []
    best = None
    for k in range(len(a) - n):
        diffs = {a[k + i] - b[i] for i in range(n)}
        if len(diffs) == 1:
            best = k
            break
    if best is None:
        return []
    offset = a[best] - b[0]
    out = []
    for i, (size, arrived, _) in enumerate(seen.frames):
        j = best + i
        if j < len(sent.frames) and sent.frames[j][0] - size == offset:
            out.append(arrived - sent.frames[j][1])
    return out


# -- one run ---------------------------------------------------------------------------------

def run(protocol: str, seconds: int, flv: Path, ts: Path, work: Path) -> dict:
    data_dir = work / f"data-{protocol}"
    env = {**os.environ, "CHT_DATA_DIR": str(data_dir)}
    urls = []
    for _ in range(STREAMS):
        port = free_port()
        urls.append(f"rtmp://127.0.0.1:{port}/live/bench-key" if protocol == "rtmp" else f"tcp://127.0.0.1:{port}")
    relay_port = free_port()
    args = [*CHT, "ingest", "--grace", "5s", "--relay-port", str(relay_port), "--no-analyze", "--no-ui"]
    for url in urls:
        args += ["--listen", url]
    service = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (data_dir / "ingest.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # listening once its status socket is there
    pushers = []
    sent, seen, stop = VideoFrames(), VideoFrames(), threading.Event()
    paced = None
    for i, url in enumerate(urls):
        if protocol == "tcp" and i == 0:
            paced = threading.Thread(target=paced_push, args=(ts, url, sent))
            paced.start()
            continue
        src, muxer = (flv, "flv") if protocol == "rtmp" else (ts, "mpegts")
        pushers.append(subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-i", str(src),
                                         "-c", "copy", "-f", muxer, url]))
    time.sleep(5.0)  # every stream live, the recorders past their start
    viewer = None
    if paced is not None:
        status = status_of(data_dir)
        session = next(c["session"] for c in status["channels"] if c["listen"] == urls[0])
        viewer = threading.Thread(target=watch, args=(f"http://127.0.0.1:{relay_port}/live/{session}.ts", seen, stop))
        viewer.start()
    cpu0, t0 = tree_cpu(service.pid), time.monotonic()
    time.sleep(seconds - 15)
    cpu1, t1 = tree_cpu(service.pid), time.monotonic()
    for p in pushers:
        if p.wait() != 0:
            print(f"{protocol}: a pusher exited {p.returncode}", file=sys.stderr)
    if paced is not None:
        paced.join()
    stop.set()
    if viewer is not None:
        viewer.join()
    service.send_signal(signal.SIGINT)
    service.wait(60)
    share = (cpu1 - cpu0) / (t1 - t0) / STREAMS
    latencies = relay_latencies(sent, seen) if paced is not None else []
    if paced is not None:
        print(f"relay: {len(sent.frames)} frames sent, {len(seen.frames)} seen ({seen.bytes} bytes), "
              f"{len(latencies)} matched",
              file=sys.stderr)
    sessions = sorted((data_dir / "sessions").iterdir())
    if len(sessions) != STREAMS:
        print(f"{protocol}: {len(sessions)} sessions for {STREAMS} pushes; the service's log:\n"
              + (data_dir / "ingest.log").read_text(), file=sys.stderr)
    durations = [json.loads((s / "manifest.json").read_text())["duration"] for s in sessions]
    return {"protocol": protocol, "window": t1 - t0, "cpu_share": share, "latencies": latencies,
            "durations": durations}


def status_of(data_dir: Path) -> dict:
    from cht.control import request

    return request(data_dir / "ingest.sock", "status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--protocols", default="rtmp,tcp")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        flv, ts = work / "src.flv", work / "src.ts"
        make_source(flv, opts.seconds, "flv")
        make_source(ts, opts.seconds, "mpegts")
        rows = [run(protocol, opts.seconds, flv, ts, work) for protocol in opts.protocols.split(",")]
    print(f"Machine: {os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}, {opts.seconds} s pushes\n")
    print("| pushes | window s | ingest + recording CPU per stream (% of one core) | sessions recorded (s) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {STREAMS} × {r['protocol']} 1280×720 30 fps 3 Mb/s | {r['window']:.1f} | {100 * r['cpu_share']:.2f} % "
              f"| {', '.join(f'{d:.1f}' for d in r['durations'])} |")
    lat = next((r["latencies"] for r in rows if r["protocol"] == "tcp"), [])
    if lat:
        lat.sort()
        print(f"\nRelay latency (push → relay viewer, {len(lat)} frames, while 4 streams record): "
              f"median {1000 * statistics.median(lat):.0f} ms, p95 {1000 * lat[int(0.95 * len(lat))]:.0f} ms, "
              f"max {1000 * lat[-1]:.0f} ms")
    else:
        print("\nRelay latency: the relay's frames could not be matched to the pushed ones")


if __name__ == "__main__":
    main()
