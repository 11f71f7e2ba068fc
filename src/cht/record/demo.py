"""The built-in live source: an ffmpeg generator that never ends, fed to the recorder.

It draws a font-free slide deck (title bars, bullet bars appearing one by one, a cut to a
moving pattern, a webcam box and a pointer: scene changes for the detector) and loops real speech (beckett.wav from the useful-moonshine-onnx wheel)
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


def slides_graph(size: str, rate: int) -> str:
    """A lavfi graph that looks like a lecture without needing a font: a slide deck whose
    bullet bars appear one by one, a cut to a moving pattern once a minute, a webcam box
    and a gliding pointer. It loops every `DECK_S` seconds."""
    w, h = (int(v) for v in size.split("x"))
    T = f"mod(t,{DECK_S:g})"
    draws = []
    for k, (start, length) in enumerate(SLIDES):
        colour = TITLE_COLOURS[k % len(TITLE_COLOURS)]
        draws.append(f"drawbox=x={w // 18}:y={h // 16}:w={w * 3 // 5}:h={h // 11}:color={colour}:t=fill:"
                     f"enable='between({T},{start},{start + length - 0.01})'")
        for j in range(int((length - 1) // BULLET_EVERY_S)):
            reveal = start + BULLET_EVERY_S * (j + 1)
            width = w * (11 - (j + k) % 4) // 16
            draws.append(f"drawbox=x={w // 12}:y={h // 4 + j * h // 8}:w={width}:h={h // 22}:color=0x3a3a3a:t=fill:"
                         f"enable='between({T},{reveal},{start + length - 0.01})'")
    cut_start, cut_length = CUT
    return (
        f"color=c=0xf4f4ef:s={size}:r={rate},format=yuv420p,{','.join(draws)}[deck];"
        f"testsrc2=s={size}:r={rate}[pattern];"
        f"[deck][pattern]overlay=enable='between({T},{cut_start},{cut_start + cut_length - 0.01})'[lecture];"
        f"testsrc2=s={w // 6 * 2 // 2}x{h // 5 // 2 * 2}:r={rate}[cam];"
        f"[lecture][cam]overlay=x={w - w // 6 - 16}:y={h - h // 5 - 16}[withcam];"
        f"[withcam]drawbox=x='{w // 3}+{w // 5}*sin(t/1.7)':y='{h // 2}+{h // 6}*cos(t/2.3)':w=8:h=12:color=red:t=fill"
    )


def generator_args(cache_dir: Path, size: str = "854x480", rate: int = 25) -> list[str]:
    """ffmpeg arguments for the demo generator, writing MPEG-TS to stdout, paced in real time."""
    return [
        ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-nostdin",
        "-re", "-f", "lavfi", "-i", slides_graph(size, rate),
        "-re", "-stream_loop", "-1", "-i", str(speech_loop(cache_dir)),
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(rate), "-pix_fmt", "yuv420p", "-b:v", "1200k",
        "-c:a", "aac", "-b:a", "64k", "-ar", "48000",
        "-f", "mpegts", "-flush_packets", "1", "pipe:1",
    ]
