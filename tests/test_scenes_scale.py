"""Slide changes at any size and style (issue 14): generated decks at 720p, 1080p and 4K, light
and dark, crf 18 and 30, with every kind of change and every distractor, scored against their
known changes; the distractors alone; and the area-averaged grey copy the detector sees.

The decks are short (a few seconds per change kind, 4K the shortest) and 15 fps to keep the
suite fast; each is rendered once per session and shared."""

from __future__ import annotations

import av
import numpy as np
import pytest
from synthetic import deck, detect_file, render_deck, scores

from cht.analyze.scenes import SlideChangeDetector, grey

pytestmark = pytest.mark.slow

ALL = ("bullet", "small", "fade", "slide", "dissolve", "cut")
DECKS = {  # name: (seed, seconds, size, theme, crf, frame rate, kinds of change)
    "720p-light-crf30": (1, 36, (1280, 720), "light", 30, 15, ALL),
    "1080p-dark-crf30": (2, 36, (1920, 1080), "dark", 30, 15, ALL),
    "4k-light-crf18": (3, 17, (3840, 2160), "light", 18, 10, ("small", "fade", "dissolve")),
}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """name -> (Deck, path), rendered on first use and kept for the session."""
    root = tmp_path_factory.mktemp("decks")
    cache = {}

    def get(name):
        if name not in cache:
            seed, seconds, size, theme, crf, rate, kinds = DECKS[name]
            spec = deck(seed, seconds, size, theme, kinds=kinds)
            cache[name] = spec, render_deck(spec, root / f"{name}.mp4", crf=crf, rate=rate)
        return cache[name]

    return get


@pytest.mark.parametrize("name", DECKS)
def test_every_kind_of_change_is_found_once_at_any_size(rendered, name):
    spec, path = rendered(name)
    found = [d.t for d in detect_file(path) if d.kind == "scene"]
    s = scores(found, spec)  # ±0.5 s of the change (of a fade's or dissolve's middle)
    assert len(spec.changes) >= 3
    assert s["f1"] >= 0.95 and s["precision"] >= 0.97, f"{name}: {s}, found {found}"


@pytest.mark.parametrize("first", ["code", "video"])
def test_pointer_cursor_webcam_and_video_alone_are_not_changes(tmp_path, first):
    """A code slide (blinking cursor) or a slide with a video playing, under a pointer that
    glides and rests and a webcam box, at 1080p crf 30: nothing but the start."""
    spec = deck(7, 10, (1920, 1080), "dark", kinds=(), first=first)
    assert (spec.cursors if first == "code" else spec.videos) and not spec.changes
    found = detect_file(render_deck(spec, tmp_path / "still.mp4", crf=30, rate=12))
    assert [d.kind for d in found] == ["start"], found


def _frame(luma: np.ndarray) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.dstack([luma] * 3), format="rgb24").reformat(format="yuv420p")


def test_grey_keeps_thin_strokes_of_large_frames():
    """A 2-pixel stroke in a 4K frame is 1/12 of a grey pixel: it must still be seen (area
    mean), where point sampling would miss it 5 times in 6."""
    luma = np.full((2160, 3840), 255, np.uint8)
    for k in range(12):
        luma[400 + 40 * k: 440 + 40 * k, 1000 + 40 * k + k: 1002 + 40 * k + k] = 0  # 2 px wide, any phase
    small = grey(_frame(luma), 320).astype(int)
    assert small.shape == (180, 320)
    darkest = [small[(400 + 40 * k) // 12 + 1, (1000 + 41 * k) // 12: (1000 + 41 * k) // 12 + 2].min() for k in range(12)]
    assert max(darkest) <= 255 - 20, darkest  # every stroke darkens a grey pixel by ≥ 20 levels (ideal: 21-42)


def test_a_small_addition_counts_whatever_the_frame_size():
    """The same two characters on the same slide at 720p, 1080p and 4K: one change each time,
    and a pixel's worth of noise never is one."""
    rng = np.random.default_rng(0)
    for width, height in ((1280, 720), (1920, 1080), (3840, 2160)):
        detector = SlideChangeDetector()
        base = np.full((height, width), 240, np.uint8)
        s = height / 720
        base[int(100 * s):int(130 * s), int(100 * s):int(700 * s)] = 30  # a text line
        added = base.copy()
        for k in range(2):  # two glyph-sized marks after it, 3 px strokes at 720p
            x = int((720 + 22 * k) * s)
            added[int(104 * s):int(128 * s), x:x + int(3 * s)] = 30
            added[int(104 * s):int(107 * s), x:x + int(14 * s)] = 30
        noise = [rng.integers(-3, 4, base.shape) for _ in range(2)]  # two noise patterns, alternating
        small = {(p, n): grey(_frame(np.clip(pic.astype(int) + noise[n], 0, 255).astype(np.uint8)), 320)
                 for p, pic in enumerate((base, added)) for n in range(2)}
        found = []
        for i in range(40):
            d = detector.process(i * 0.25, small[int(i >= 20), i % 2])
            if d:
                found.append((d.kind, d.t))
        assert [k for k, _ in found] == ["start", "scene"], (width, found)
        assert abs(found[1][1] - 4.875) <= 0.25, (width, found)


def test_a_change_across_a_gap_is_dated_after_it():
    """Samples either side of a recording gap: the change cannot be inside the gap."""
    base = np.full((180, 320), 230, np.uint8)
    changed = base.copy()
    changed[40:52, 30:200] = 20  # a new line of text
    detector = SlideChangeDetector()
    found = [detector.process(i * 0.25, base) for i in range(20)]  # 0 - 4.75 s
    found += [detector.process(8.0 + i * 0.25, changed) for i in range(8)]  # after a gap to 8 s
    scenes = [d for d in found if d and d.kind == "scene"]
    assert len(scenes) == 1 and scenes[0].t >= 8.0, scenes
