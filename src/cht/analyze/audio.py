"""Waveform peaks on the global clock, in BBC audiowaveform's formats, grown incrementally.

Each zoom level is an audiowaveform binary `.dat` file (version 2, 8-bit, one channel) that
only ever grows: complete pixels are appended and the header's length field rewritten in
place, so memory stays flat however long the session runs (a partial pixel of at most
`samples_per_pixel` samples is all that is held). The JSON form (`version, channels,
sample_rate, samples_per_pixel, bits, length, data` as min/max pairs) is written from the
`.dat` when a session ends or is analysed offline.

Pixel i of a level covers global samples [i·spp, (i+1)·spp) at 16 kHz, so a peak's pixel is
its global time × rate / spp. Gaps (no audio recorded) are zero pixels, which keeps every
later pixel at its true time.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from cht.analyze.reader import PCM_RATE

LEVELS = (160, 1600, 16000)  # samples per pixel: 100, 10 and 1 pixels per second
HEADER = struct.Struct("<iIiiIi")  # version, flags, sample rate, samples per pixel, length, channels
FLAG_8BIT = 1
MAX_PAD_CHUNK = PCM_RATE * 60  # samples of silence written at a time across a gap


def level_name(samples_per_pixel: int) -> str:
    return "waveform" if samples_per_pixel == LEVELS[0] else f"waveform-{samples_per_pixel}"


class PeakLevel:
    """One zoom level, appended to `<dir>/<name>.dat`."""

    def __init__(self, directory: Path, samples_per_pixel: int) -> None:
        self.spp = samples_per_pixel
        self.path = directory / f"{level_name(samples_per_pixel)}.dat"
        self.length = 0
        self._carry = np.zeros(0, dtype=np.int16)
        self._file = open(self.path, "w+b")
        self._file.write(HEADER.pack(2, FLAG_8BIT, PCM_RATE, self.spp, 0, 1))
        self._file.flush()

    def add(self, samples: np.ndarray) -> tuple[int, list[int]]:
        """Append samples; return (first new pixel, [min, max, ...]) of the pixels completed."""
        data = np.concatenate([self._carry, samples]) if self._carry.size else samples
        whole = data.size // self.spp * self.spp
        self._carry = data[whole:].copy()
        if not whole:
            return self.length, []
        return self._append(data[:whole].reshape(-1, self.spp))

    def finish(self) -> None:
        """Write the last partial pixel and close."""
        if self._carry.size:
            self._append(self._carry.reshape(1, -1))
            self._carry = np.zeros(0, dtype=np.int16)
        self._file.close()

    def _append(self, pixels: np.ndarray) -> tuple[int, list[int]]:
        peaks = np.empty((pixels.shape[0], 2), dtype=np.int8)
        peaks[:, 0] = pixels.min(axis=1) >> 8  # 16-bit to 8-bit, as audiowaveform --bits 8
        peaks[:, 1] = pixels.max(axis=1) >> 8
        first = self.length
        self._file.seek(0, os.SEEK_END)
        self._file.write(peaks.tobytes())
        self.length += pixels.shape[0]
        self._file.seek(16)
        self._file.write(struct.pack("<I", self.length))
        self._file.flush()
        return first, peaks.reshape(-1).tolist()


class Waveform:
    """All zoom levels, fed PCM on the global clock."""

    def __init__(self, audio_dir: Path) -> None:
        audio_dir.mkdir(parents=True, exist_ok=True)
        self.audio_dir = audio_dir
        self.levels = [PeakLevel(audio_dir, spp) for spp in LEVELS]
        self.next_sample = 0  # global sample index the next PCM sample belongs at

    def add(self, t: float, samples: np.ndarray) -> list[tuple[int, int, list[int]]]:
        """Place PCM that starts at global time t; return (level, first pixel, data) of new pixels."""
        start = int(round(t * PCM_RATE))
        if start > self.next_sample:  # a gap: silence keeps later pixels at their true times
            updates = []
            while start > self.next_sample:
                n = min(start - self.next_sample, MAX_PAD_CHUNK)
                updates = _merge(updates, self._feed(np.zeros(n, dtype=np.int16)))
            return _merge(updates, self._feed(samples))
        if start < self.next_sample:  # rounding overlap at a segment boundary
            samples = samples[self.next_sample - start:]
        return self._feed(samples)

    def finish(self) -> None:
        for level in self.levels:
            level.finish()
            write_json(level.path, level.path.with_suffix(".json"))

    def _feed(self, samples: np.ndarray) -> list[tuple[int, int, list[int]]]:
        if not samples.size:
            return []
        self.next_sample += samples.size
        out = []
        for level in self.levels:
            first, data = level.add(samples)
            if data:
                out.append((level.spp, first, data))
        return out


def _merge(a: list[tuple[int, int, list[int]]], b: list[tuple[int, int, list[int]]]) -> list:
    merged = {spp: (first, list(data)) for spp, first, data in a}
    for spp, first, data in b:
        if spp in merged:
            merged[spp][1].extend(data)
        else:
            merged[spp] = (first, list(data))
    return [(spp, first, data) for spp, (first, data) in merged.items()]


def read_dat(path: Path) -> dict:
    """An audiowaveform .dat file as the audiowaveform JSON structure."""
    raw = path.read_bytes()
    version, flags, rate, spp, length, channels = HEADER.unpack_from(raw)
    values = np.frombuffer(raw, dtype=np.int8 if flags & FLAG_8BIT else "<i2", offset=HEADER.size)
    values = values[: length * 2 * channels]
    return {
        "version": 2,
        "channels": channels,
        "sample_rate": rate,
        "samples_per_pixel": spp,
        "bits": 8 if flags & FLAG_8BIT else 16,
        "length": length,
        "data": values.tolist(),
    }


def read_dat_range(path: Path, first: int, last: int) -> tuple[int, int, list[int]]:
    """Pixels [first, last) of a (possibly growing) 8-bit .dat: (samples per pixel, length,
    min/max pairs). Reads only those bytes: a 3-hour level is never loaded whole."""
    with open(path, "rb") as f:
        _, flags, _, spp, length, channels = HEADER.unpack(f.read(HEADER.size))
        size = 1 if flags & FLAG_8BIT else 2
        first, last = max(0, first), max(0, min(last, length))
        if last <= first:
            return spp, length, []
        f.seek(HEADER.size + first * 2 * channels * size)
        raw = f.read((last - first) * 2 * channels * size)
    values = np.frombuffer(raw[: len(raw) // (2 * size) * 2 * size], dtype=np.int8 if size == 1 else "<i2")
    return spp, length, values.tolist()


def write_json(dat: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(read_dat(dat), separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, target)
