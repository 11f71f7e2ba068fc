"""The web timeline on a long session: time from navigation to a fully drawn timeline in
headless Chromium, and the page's memory.

A synthetic 3-hour session: six real 30-minute fMP4 segments (320x180, 1 fps, as the
recorder writes them), 1,000 keyframes, 3 h of waveform at all three zoom levels, 30,000
transcript words (3,000 lines). Three times from navigation, each when it first holds: the
timeline (session loaded, every thumbnail and transcript line in the DOM, the waveform drawn
with its peaks); the thumbnails in view have loaded their images (the others load lazily, as
the user scrolls); the video shows its first picture (readyState >= 2).

    python bench/ui.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from cht.analyze.audio import FLAG_8BIT, HEADER, LEVELS, level_name
from cht.analyze.reader import PCM_RATE
from cht.media.ffmpeg import ffmpeg_exe
from cht.session import Manifest, Segment, Session, iso
from cht.transcribe.store import TranscriptLine, TranscriptStore, Word
from cht.web.app import UiState
from cht.web.server import WebServer

HOURS = 3
FRAMES = 1000
WORDS = 30_000
DRAWN = """() => new Promise((resolve) => {
  const inView = () => { const pane = document.getElementById('thumbs').getBoundingClientRect();
    return [...document.querySelectorAll('#thumbs img')].filter((img) => { const r = img.getBoundingClientRect();
      return r.bottom > pane.top && r.top < pane.bottom && r.right > pane.left && r.left < pane.right; }); };
  const parts = {
    timeline: () => window.cht && window.cht.ready && window.cht.drawnWithPeaks
      && document.querySelectorAll('#thumbs img').length === %d
      && document.querySelectorAll('#transcript .line').length === %d,
    video: () => document.getElementById('video').readyState >= 2,
    thumbnails: () => inView().length > 0 && inView().every((img) => img.complete && img.naturalWidth > 0),
  };
  const at = {};
  const check = () => {
    for (const [name, done] of Object.entries(parts)) if (!(name in at) && done()) at[name] = performance.now();
    if (Object.keys(at).length === Object.keys(parts).length) resolve(at); else requestAnimationFrame(check);
  };
  check();
})"""


def build(data: Path) -> None:
    seconds = HOURS * 3600
    session = Session.create(data, "three-hours")
    root = session.root
    start = 1.7e9
    segments = [Segment(f"segments/seg_{i:05d}.mp4", i * 1800.0, 1800.0, iso(start + i * 1800), iso(start + (i + 1) * 1800),
                        0, 0) for i in range(seconds // 1800)]
    session.save_manifest(Manifest(id="three-hours", source="synthetic", state="stopped", reason="bench",
                                   started_at=segments[0].started_at, segments=segments, gaps=[]))
    (root / "segments").mkdir(exist_ok=True)
    first = root / segments[0].file
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=320x180:r=1:d=1800",
                    "-f", "lavfi", "-i", "sine=f=440:d=1800", "-c:v", "libx264", "-preset", "ultrafast", "-g", "2",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
                    str(first)], check=True)
    for seg in segments[1:]:
        shutil.copyfile(first, root / seg.file)
    (root / "frames").mkdir()
    picture = root / "frames" / "pattern.jpg"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=320x180",
                    "-frames:v", "1", str(picture)], check=True)
    with open(root / "frames.jsonl", "w") as f:
        for i in range(FRAMES):
            t = round(i * seconds / FRAMES, 3)
            name = f"{t:010.3f}"
            shutil.copyfile(picture, root / "frames" / f"{name}.jpg")
            shutil.copyfile(picture, root / "frames" / f"{name}.thumb.jpg")
            f.write(json.dumps({"t": t, "file": f"frames/{name}.jpg", "thumb": f"frames/{name}.thumb.jpg",
                                "score": 0.5, "kind": "scene"}) + "\n")
    picture.unlink()
    (root / "audio").mkdir()
    rng = np.random.default_rng(3)
    for spp in LEVELS:
        n = seconds * PCM_RATE // spp
        envelope = np.abs(np.sin(np.arange(n) * spp / PCM_RATE / 2.3)) * 100
        hi = (envelope * rng.random(n)).astype(np.int8)
        pairs = np.empty(2 * n, np.int8)
        pairs[0::2], pairs[1::2] = -hi, hi
        with open(root / "audio" / f"{level_name(spp)}.dat", "wb") as f:
            f.write(HEADER.pack(2, FLAG_8BIT, PCM_RATE, spp, n, 1))
            f.write(pairs.tobytes())
    store = TranscriptStore(root)
    per_line = 10
    with open(store.path, "w") as f:
        for i in range(WORDS // per_line):
            t0 = i * seconds / (WORDS // per_line)
            words = [Word(round(t0 + 0.3 * k, 3), round(t0 + 0.3 * k + 0.25, 3), f" word{k}", 0.9)
                     for k in range(per_line)]
            f.write(TranscriptLine(i, words[0].start, words[-1].end, " ".join(f"word{k}" for k in range(per_line)),
                                   words, [t0, t0 + seconds / (WORDS // per_line)]).to_json() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        build(data)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        web = WebServer(UiState(data), host="127.0.0.1", port=port, fixed_port=True)
        web.start()
        times, heaps = {"timeline": [], "video": [], "thumbnails": []}, []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu",
                                              "--disable-background-networking", "--enable-precise-memory-info"])
            for _ in range(opts.runs):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(web.url("three-hours"), wait_until="commit")
                for name, at in page.evaluate(DRAWN % (FRAMES, WORDS // 10)).items():
                    times[name].append(at)
                heaps.append(page.evaluate("performance.memory.usedJSHeapSize") / 2**20)
                page.close()
            browser.close()
        web.stop()
    print(f"\n{HOURS} h session, {FRAMES} keyframes, {WORDS:,} words; headless Chromium 1280x800, "
          f"{os.cpu_count()} cores, {platform.machine()}, {opts.runs} runs\n")
    print("| measure | median | worst |")
    print("|---|---|---|")
    for name, what in (("timeline", "session loaded, every thumbnail and line in the DOM, waveform with peaks"),
                       ("thumbnails", "every thumbnail in view has its image"),
                       ("video", "the video shows its first picture (readyState >= 2)")):
        print(f"| navigation → {what} | {statistics.median(times[name]):.0f} ms | {max(times[name]):.0f} ms |")
    print(f"| JS heap used | {statistics.median(heaps):.1f} MiB | {max(heaps):.1f} MiB |")


if __name__ == "__main__":
    main()
