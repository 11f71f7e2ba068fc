"""Waveform peaks speed: how many times faster than real time cht computes its peaks.

Two measurements on 10 minutes of generated speech-like audio: the peaks alone (16 kHz mono
PCM into all three zoom levels, .dat files appended as live), and the whole audio path of
`cht analyze` (AAC decode + resampling to 16 kHz + peaks) from a recorded segment.

    python bench/waveform.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cht.analyze.audio import Waveform
from cht.analyze.reader import PCM_RATE, PcmChunk, SegmentDecoder
from cht.media.ffmpeg import ffmpeg_exe, recorder_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    opts = parser.parse_args()
    seconds = opts.minutes * 60
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * PCM_RATE)) / PCM_RATE
    pcm = (8000 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
           + rng.normal(0, 300, t.size)).astype(np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wave = Waveform(tmp / "peaks")
        start = time.perf_counter()
        for i in range(0, pcm.size, PCM_RATE // 2):  # half-second chunks, as the live reader hands them
            wave.add(i / PCM_RATE, pcm[i:i + PCM_RATE // 2])
        wave.finish()
        peaks_s = time.perf_counter() - start

        src = tmp / "talk.mp4"
        subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                        f"sine=f=220:d={seconds}", "-c:a", "aac", "-b:a", "96k", str(src)], check=True)
        (tmp / "seg").mkdir()
        subprocess.run(recorder_args(["-i", str(src)], ["-map", "0:a:0"], ["-c", "copy"], tmp / "seg",
                                     start_number=0, metadata={}, max_segment_s=7200, fragment_s=1.0), check=True)
        wave = Waveform(tmp / "peaks2")
        start = time.perf_counter()
        decoder = SegmentDecoder(tmp / "seg" / "seg_00000.mp4", 0.0, video_fps=4)
        for item in [*decoder.poll(), *decoder.finish()]:
            if isinstance(item, PcmChunk):
                wave.add(item.t, item.samples)
        wave.finish()
        path_s = time.perf_counter() - start
    print(f"machine: {platform.node()} ({os.cpu_count()} cores, {platform.machine()}), "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, {opts.minutes:g} min of audio\n")
    print("| what | seconds | × real time |")
    print("|---|---|---|")
    print(f"| peaks: 16 kHz PCM → 3 zoom levels (.dat, appended) | {peaks_s:.2f} | {seconds / peaks_s:.0f}× |")
    print(f"| AAC decode + resample to 16 kHz + peaks | {path_s:.2f} | {seconds / path_s:.0f}× |")


if __name__ == "__main__":
    sys.exit(main())
