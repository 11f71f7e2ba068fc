"""The transcriber falls more than 5 minutes behind: an 8-minute talk recorded with --fast
arrives in seconds while the speech engine, made slower than the CPU it needs (a fault no
real machine can be made to show on demand: the real model is fast enough here), takes its
time. The lag is reported and grows, memory stays bounded (the queue is bounded in seconds of
audio: the follower waits, the files keep everything), and when it has caught up every
phrase is in the transcript."""

from __future__ import annotations

import os
import subprocess

import pytest

from cht import events as ev
from cht.control import request
from cht.errors import SessionError
from cht.media.ffmpeg import ffmpeg_exe
from cht.session import Session
from cht.transcribe.engine import SpeechEngine
from conftest import rss_mib
from speech import SlowModel, beckett_words, engine, live_recording, match, speech_wav, transcript_words

pytestmark = pytest.mark.slow

SECONDS = 480.0
OFFSETS = [2.0 + 80.0 * k for k in range(6)]  # silence costs the engine nothing: the lag comes from the talk's length
BACKLOG_MIB = SECONDS * 16_000 * 4 / 2**20  # every sample of the talk waiting as float32


def test_transcriber_five_minutes_behind(tmp_path):
    wav = speech_wav(tmp_path / "talk.wav", OFFSETS, SECONDS)
    src = tmp_path / "talk.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", f"color=c=0x336699:s=320x240:r=5:d={SECONDS}", "-i", str(wav), "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(src)],
                   check=True)
    truth = [(w, o + a, o + b) for o in OFFSETS for w, a, b in beckett_words()]
    session = Session.create(tmp_path / "data", "behind")
    bus = ev.EventBus()
    reported: list[float] = []
    bus.subscribe(lambda e: isinstance(e, ev.TranscriptLag) and reported.append(e.lag_s))
    slow = SpeechEngine(SlowModel(engine().model, extra_s=3.0))
    rec = live_recording(session, str(src), bus, tmp_path / "cache", speech=slow, fast=True,
                         stages=("waveform", "transcript"))
    lags, rss = [], []
    rec.start()
    while not rec.wait(0.5):
        try:
            lag = request(session.control_path, "status", timeout=2).get("transcript_lag")
            if lag is not None:
                lags.append(lag)
        except SessionError:
            pass
        if (session.root / "transcript.jsonl").exists():
            rss.append(rss_mib(os.getpid()))  # from the first line transcribed: the model has run
    assert rec.manifest.state == "stopped"
    grown = max(rss) - rss[0]
    print(f"RSS {rss[0]:.0f} MiB at the first line, at most {max(rss):.0f} MiB: grew {grown:.0f} MiB; "
          f"lag at most {max(lags):.0f} s (status socket), {max(reported):.0f} s (events)")
    # The whole talk's PCM as the queue holds it (float32, 16 kHz) is 29 MiB; a queue that kept
    # audio it had transcribed, or decoded video piling up, would pass 150 MiB within minutes.
    assert grown < 150, (rss[0], max(rss), BACKLOG_MIB)
    assert max(lags) >= 300, max(lags)  # reported by the status socket: 5+ minutes waited
    assert max(reported) >= 300 and reported[-1] < 5, reported[-5:]  # and as events, down to nothing at the end
    heard = transcript_words(session.root)
    phrase = len(beckett_words())
    for k in range(0, len(truth), phrase):
        found = [i for i, js in match(truth[k:k + phrase], heard, tolerance=1.0).items() if js]
        assert len(found) >= phrase - 1, (k // phrase, heard)
