"""`cht record screen` for real: Xvfb is the display, a Tk slide show is on it, PulseAudio's
null sink plays real speech (jfk.flac) and its monitor is the microphone.
The session must hold video and sound, a keyframe per slide, the slides' titles read by OCR and
the speech transcribed. Needs Debian's xvfb, pulseaudio and pulseaudio-utils (scripts/test
installs them); a missing one fails the test, it is never skipped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import pytest
from conftest import Cht, wait_for
from speech import HUMAN, jfk_path, transcript_words, word_error_rate

from cht.analyze.scenes import read_frames
from cht.media.ffmpeg import ffmpeg_exe
from cht.ocr.text import read_ocr

pytestmark = pytest.mark.slow

TITLES = ["Convex optimisation", "Gradient descent", "Questions welcome"]
SLIDE_S = 6.0


def _need(program: str) -> str:
    path = shutil.which(program)
    assert path, f"{program} is missing: ./scripts/test installs Debian's xvfb, pulseaudio and pulseaudio-utils"
    return path


@pytest.fixture
def desktop():
    """An X display and a sound server of our own; yields the environment that reaches them."""
    procs = []
    runtime = Path(tempfile.mkdtemp(prefix="cht-pa-"))  # short: a unix socket path has 108 bytes
    try:
        xvfb = subprocess.Popen([_need("Xvfb"), "-displayfd", "1", "-screen", "0", "1024x576x24", "-nolisten", "tcp"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(xvfb)
        env = {"DISPLAY": f":{xvfb.stdout.readline().strip()}", "XDG_RUNTIME_DIR": str(runtime),
               "HOME": str(runtime)}
        pulse = subprocess.Popen([_need("pulseaudio"), "-n", "--daemonize=no", "--exit-idle-time=-1",
                                  "--load=module-native-protocol-unix", "--load=module-null-sink sink_name=room"],
                                 env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(pulse)
        wait_for(lambda: (runtime / "pulse" / "native").exists(), 10, what="PulseAudio to listen")
        yield {**os.environ, **env}
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(runtime, ignore_errors=True)


def test_screen_and_microphone_become_a_session_with_slides_slide_text_and_transcript(cht: Cht, desktop, tmp_path):
    cht.env.update(desktop)
    speech = tmp_path / "speech.wav"  # as WAV: paplay played 2 s of jfk.flac and stopped
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(jfk_path()), "-ac", "1", "-ar", "16000", str(speech)],
                   check=True, timeout=60)
    show = subprocess.Popen([sys.executable, str(Path(__file__).with_name("slideshow.py")), str(SLIDE_S), *TITLES],
                            env=desktop, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert show.stdout.readline().strip() == "slide 0", show.stderr.read()
        rec = cht.start("record", "screen", "--no-ui", "--language", "en", "--session", "desk")
        wait_for(lambda: (cht.data_dir / "sessions" / "desk" / "manifest.json").exists()
                 and cht.manifest("desk")["duration"] >= 1.0, 30, what="the screen to be recorded")
        subprocess.run([_need("paplay"), "--device=room", str(speech)], env=desktop, check=True, timeout=60)
        wait_for(lambda: show.poll() is None and cht.manifest("desk")["duration"] >= 2 * SLIDE_S + 3, 30,
                 what="the last slide to be recorded")
        wait_for(lambda: {"your", "country"} <= {w for w, _, _ in transcript_words(cht.session_dir("desk"))}, 60,
                 what="the speech to be transcribed")
        code, out, err = cht.stop(rec)
    finally:
        show.send_signal(signal.SIGTERM)
        show.wait(10)
    assert code == 0, err
    session = cht.session_dir("desk")
    manifest = cht.manifest("desk")
    assert manifest["state"] == "stopped"
    with av.open(str(session / manifest["segments"][0]["file"])) as media:
        assert {s.type for s in media.streams} >= {"video", "audio"}
    frames = read_frames(session)
    assert len(frames) >= len(TITLES), [f.t for f in frames]
    read = " ".join(slide.text for slide in read_ocr(session)).lower()
    assert all(title.lower() in read for title in TITLES), read
    heard = " ".join(w for w, _, _ in transcript_words(session))
    assert word_error_rate(HUMAN["jfk"], heard) < 0.15, heard
