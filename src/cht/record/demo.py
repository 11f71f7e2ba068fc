"""The built-in live source: an ffmpeg generator that never ends, fed to the recorder.

It draws a moving test pattern whose colours jump every few seconds (a scene change for
the detector) and loops real speech (beckett.wav from the useful-moonshine-onnx wheel)
with a pause after each pass, encoded to MPEG-TS like a broadcast. The generator runs for
the whole session; recorders come and go and are fed through a `PipeFeed`, so a recorder
restart loses exactly the outage, as with any live source.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

from cht.media.ffmpeg import ffmpeg_exe

SCENE_EVERY_S = 5.0  # seconds between the demo's scene changes
SPEECH_PAUSE_S = 4.0  # seconds of silence after each pass of the speech


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


def generator_args(cache_dir: Path, size: str = "854x480", rate: int = 25) -> list[str]:
    """ffmpeg arguments for the demo generator, writing MPEG-TS to stdout, paced in real time."""
    hue = f"hue=H=2*PI*floor(t/{SCENE_EVERY_S:g})*3/7"
    video = f"testsrc2=s={size}:r={rate},{hue}"
    return [
        ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-nostdin",
        "-re", "-f", "lavfi", "-i", video,
        "-re", "-stream_loop", "-1", "-i", str(speech_loop(cache_dir)),
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(rate), "-pix_fmt", "yuv420p", "-b:v", "1200k",
        "-c:a", "aac", "-b:a", "64k", "-ar", "48000",
        "-f", "mpegts", "-flush_packets", "1", "pipe:1",
    ]
