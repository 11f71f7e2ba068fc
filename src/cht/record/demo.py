"""The built-in live source: an ffmpeg generator that never ends, fed to the recorder.

It draws a slide deck with real text (titles, bullets appearing one by one, a cut to a moving
pattern, a webcam box and a pointer: scene changes for the detector, slide text for OCR,
chapters and search) in Pillow's built-in font, so no system font is needed, and loops real
speech (beckett.wav from the useful-moonshine-onnx wheel)
with a pause after each pass, encoded to MPEG-TS like a broadcast. The generator runs for
the whole session; recorders come and go and are fed through a `PipeFeed`, so a recorder
restart loses exactly the outage, as with any live source.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

from cht.media.ffmpeg import ffmpeg_exe

SPEECH_PAUSE_S = 4.0  # seconds of silence after each pass of the speech
DECK_S = 60.0  # seconds before the demo's slide deck starts over
SLIDES = ((0, 12), (12, 12), (24, 12), (36, 10), (50, 10))  # (start, length) of each slide, seconds
CUT = (46, 4)  # (start, length): a cut to a moving pattern, like a video clip in a talk
BULLET_EVERY_S = 3.0  # seconds between bullets appearing
TITLE_COLOURS = ("0x1f5fa8", "0xa8361f", "0x2f8f4e", "0x7a3fa0", "0xc07a12")
NO_CLOCK = "drawbox=x=0:y=0:w=104:h=40:color=red:t=fill"  # testsrc2's clock, which OCR would read as slide text
DECK = (  # title and bullets of each slide in SLIDES (a slide shows as many bullets as fit its time)
    ("Welcome to the cht demo", ("Everything you see is recorded live", "Slides, waveform and speech",
                                 "Open the timeline link to follow")),
    ("Recording that survives crashes", ("Fragmented MP4 segments", "A watchdog restarts the recorder",
                                         "Outages become explicit gaps")),
    ("Keyframes and slide text", ("A new bullet is a new keyframe", "Text is read off every slide",
                                  "Titles become chapters")),
    ("Search what was said and shown", ("Try: cht search fail", "Or a word only shown: palimpsest")),
    ("Ever tried, ever failed", ("No matter: try again", "Fail again, fail better")),
)


def speech_wav() -> Path:
    """beckett.wav, shipped in the useful-moonshine-onnx wheel (10 s of real speech)."""
    import moonshine_onnx

    return Path(moonshine_onnx.__file__).parent / "assets" / "beckett.wav"


def speech_loop(cache_dir: Path) -> Path:
    """beckett.wav followed by a pause, written once into `cache_dir`; the demo loops it."""
    target = cache_dir / f"demo-speech-{SPEECH_PAUSE_S:g}s.wav"
    if target.exists():
        return target
    with wave.open(str(speech_wav()), "rb") as src:
        params = src.getparams()
        frames = src.readframes(params.nframes)
    silence = b"\0" * int(SPEECH_PAUSE_S * params.framerate) * params.sampwidth * params.nchannels
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames + silence)
    os.replace(tmp, target)
    return target


def demo_font(cache_dir: Path) -> Path:
    """Pillow's built-in scalable font (Aileron, inside Pillow itself) as a file for
    ffmpeg's drawtext, written once into `cache_dir`: the demo needs no system font."""
    from PIL import ImageFont

    target = cache_dir / "demo-font.ttf"
    if not target.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(ImageFont.load_default(size=24).font_bytes)
        os.replace(tmp, target)
    return target


def _text(text: str) -> str:
    """drawtext's text=, escaped for its own syntax and the filter graph's."""
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'").replace(",", "\\,")


def slides_graph(size: str, rate: int, font: Path) -> str:
    """A lavfi graph that looks like a lecture: a slide deck whose title sits on a coloured
    bar and whose bullets appear one by one, a cut to a moving pattern once a minute, a
    webcam box and a gliding pointer. It loops every `DECK_S` seconds."""
    w, h = (int(v) for v in size.split("x"))
    T = f"mod(t,{DECK_S:g})"
    draws = []
    for k, ((start, length), (title, bullets)) in enumerate(zip(SLIDES, DECK)):
        colour = TITLE_COLOURS[k % len(TITLE_COLOURS)]
        shown = f"enable='between({T},{start},{start + length - 0.01})'"
        draws.append(f"drawbox=x={w // 18}:y={h // 16}:w={w * 4 // 5}:h={h // 8}:color={colour}:t=fill:{shown}")
        draws.append(f"drawtext=fontfile={font}:text='{_text(title)}':x={w // 18 + h // 40}:y={h // 16 + h // 40}:"
                     f"fontsize={h // 13}:fontcolor=white:{shown}")
        for j in range(min(len(bullets), int((length - 1) // BULLET_EVERY_S))):
            reveal = start + BULLET_EVERY_S * (j + 1)
            draws.append(f"drawtext=fontfile={font}:text='{_text('- ' + bullets[j])}':x={w // 12}:"
                         f"y={h // 4 + j * h // 8}:fontsize={h // 20}:fontcolor=0x2a2a2a:"
                         f"enable='between({T},{reveal},{start + length - 0.01})'")
    cut_start, cut_length = CUT
    return (
        f"color=c=0xf4f4ef:s={size}:r={rate},format=yuv420p,{','.join(draws)}[deck];"
        f"testsrc2=s={size}:r={rate},{NO_CLOCK}[pattern];"
        f"[deck][pattern]overlay=enable='between({T},{cut_start},{cut_start + cut_length - 0.01})'[lecture];"
        f"testsrc2=s={w // 6 * 2 // 2}x{h // 5 // 2 * 2}:r={rate},{NO_CLOCK}[cam];"
        f"[lecture][cam]overlay=x={w - w // 6 - 16}:y={h - h // 5 - 16}[withcam];"
        f"[withcam]drawbox=x='{w // 3}+{w // 5}*sin(t/1.7)':y='{h // 2}+{h // 6}*cos(t/2.3)':w=8:h=12:color=red:t=fill"
    )


def generator_args(cache_dir: Path, size: str = "854x480", rate: int = 25) -> list[str]:
    """ffmpeg arguments for the demo generator, writing MPEG-TS to stdout, paced in real time."""
    return [
        ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-nostdin",
        "-re", "-f", "lavfi", "-i", slides_graph(size, rate, demo_font(cache_dir)),
        "-re", "-stream_loop", "-1", "-i", str(speech_loop(cache_dir)),
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(rate), "-pix_fmt", "yuv420p", "-b:v", "1200k",
        "-c:a", "aac", "-b:a", "64k", "-ar", "48000",
        "-f", "mpegts", "-flush_packets", "1", "pipe:1",
    ]
