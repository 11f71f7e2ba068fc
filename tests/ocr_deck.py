"""A generated slide deck with known text, for OCR (issue 16): each slide drawn by Pillow in
DejaVu Sans (titles, bullets) or DejaVu Sans Mono (code), light and dark themes, then a
camera cut with no text (testsrc2, its clock covered), all encoded by ffmpeg as H.264 at 720p. `Deck.slides` is the truth:
what each shown picture says, when it appears, and its title."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from cht.media.ffmpeg import ffmpeg_exe
from cht.record.demo import NO_CLOCK

SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
THEMES = {"light": ("#FFFFFF", "#1F4E79", "#FFFFFF", "#202020"),  # background, band, title, text
          "dark": ("#1E1E2E", "#3A3F5C", "#F8F8F2", "#E0E0E0")}
SLIDE_ONLY = "brachistochrone"  # on a slide, never said


@dataclass
class Shown:
    start: float  # seconds
    length: float
    title: str  # "" for the camera
    lines: list[str]  # the body, top to bottom
    theme: str = "light"
    code: bool = False

    @property
    def all_lines(self) -> list[str]:
        return ([self.title] if self.title else []) + self.lines


def slides(seconds: float = 4.0) -> list[Shown]:
    """Titles change on most slides; the second only gains a bullet (same title), the fifth is
    a camera (a moving test pattern, no text)."""
    bodies = [
        ("Convex optimisation basics", ["- A convex loss has one minimum", "- Gradients point uphill"], "light", False),
        ("Convex optimisation basics", ["- A convex loss has one minimum", "- Gradients point uphill",
                                        "- Step size decides the pace"], "light", False),
        ("Stochastic gradient descent", ["- Sample a small batch each step", f"- The {SLIDE_ONLY} curve is fastest",
                                         "- Momentum smooths the noise"], "dark", False),
        ("Training loop in Python", ["for x, y in batches:", "    loss = model(x, y)", "    loss.backward()",
                                     "    opt.step()"], "dark", True),
        ("", [], "light", False),
        ("Results and next steps", ["- Error fell from 12.5% to 3.1%", "- Try a cosine learning rate"],
         "light", False),
    ]
    return [Shown(i * seconds, seconds, title, lines, theme, code)
            for i, (title, lines, theme, code) in enumerate(bodies)]


def draw(shown: Shown, path: Path, size: tuple[int, int] = (1280, 720)) -> Path:
    W, H = size
    background, band, title_colour, text = THEMES[shown.theme]
    image = Image.new("RGB", size, background)
    d = ImageDraw.Draw(image)
    d.rectangle([0, 0, W, int(H * 0.15)], fill=band)
    d.text((int(W * 0.05), int(H * 0.035)), shown.title, font=ImageFont.truetype(SANS, int(H * 0.07)),
           fill=title_colour)
    font = ImageFont.truetype(MONO if shown.code else SANS, int(H * 0.05))
    for i, line in enumerate(shown.lines):
        d.text((int(W * 0.07), int(H * 0.22 + i * H * 0.09)), line, font=font, fill=text)
    image.save(path)
    return path


def render(deck: list[Shown], path: Path, size: tuple[int, int] = (1280, 720), rate: int = 10) -> Path:
    """The deck as H.264 (crf 23, 2 s GOP, no sound); a camera is ffmpeg's testsrc2."""
    W, H = size
    args = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error"]
    for i, shown in enumerate(deck):
        if shown.title or shown.lines:
            args += ["-loop", "1", "-framerate", str(rate), "-t", f"{shown.length}",
                     "-i", str(draw(shown, path.with_name(f"{path.stem}-{i}.png"), size))]
        else:
            args += ["-f", "lavfi", "-i", f"testsrc2=s={W}x{H}:r={rate}:d={shown.length},{NO_CLOCK}"]
    inputs = "".join(f"[{i}:v]format=yuv420p,setsar=1[v{i}];" for i in range(len(deck)))
    concat = "".join(f"[v{i}]" for i in range(len(deck))) + f"concat=n={len(deck)}:v=1:a=0[out]"
    args += ["-filter_complex", inputs + concat, "-map", "[out]", "-c:v", "libx264", "-preset", "veryfast",
             "-crf", "23", "-g", str(rate * 2), "-pix_fmt", "yuv420p", "-r", str(rate), "-threads", "2", str(path)]
    subprocess.run(args, check=True)
    return path


def cer(found: str, truth: str) -> tuple[int, int]:
    """(edits, characters of the truth): Levenshtein distance, character by character."""
    previous = list(range(len(found) + 1))
    for i, a in enumerate(truth, 1):
        current = [i]
        for j, b in enumerate(found, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1], len(truth)
