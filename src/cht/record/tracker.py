"""Follow the segment files while they grow: complete duration and bytes of each, cheaply.

Each poll lists the segments directory and reads only the bytes a file gained since the
last poll (see `media.fmp4`), so it costs the same an hour in as a second in.
"""

from __future__ import annotations

from pathlib import Path

from cht.media.fmp4 import Fmp4Scan
from cht.session import segment_index


class SegmentTracker:
    def __init__(self, segments_dir: Path) -> None:
        self.segments_dir = segments_dir
        self._scans: dict[Path, Fmp4Scan] = {}

    def poll(self) -> list[tuple[int, Fmp4Scan]]:
        """(index, scan) of every segment file, in index order, brought up to date."""
        for path in self.segments_dir.glob("seg_*.mp4"):
            if path not in self._scans and segment_index(path) is not None:
                self._scans[path] = Fmp4Scan(path)
        out = []
        for path, scan in self._scans.items():
            if path.exists():
                out.append((segment_index(path), scan.update()))
        return sorted(out, key=lambda item: item[0])

    def forget(self, path: Path) -> None:
        self._scans.pop(path, None)
