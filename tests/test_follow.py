"""The follower: one reader of a session's files feeding every stage, whoever records.

Live and to the end of the files give the same keyframes and transcript; `cht follow` ends
when the recording it follows stops; a stage that raises is switched off for that session
alone while the others and the recording go on."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from cht import events as ev
from cht.analyze.reader import PCM_RATE, PcmChunk, VideoSample
from cht.follower import joined_pcm
from cht.session import Session
from cht.stages import Stage
from conftest import Cht, wait_for
from speech import live_recording, match, speech_wav, transcript_words
from synthetic import lecture, render

pytestmark = pytest.mark.slow

OFFSETS = [1.0, 12.5]


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """A 24 s lecture: slides with bullets, a cut, the webcam box, and real speech twice."""
    from speech import beckett_words

    folder = tmp_path_factory.mktemp("follow")
    spec = lecture(duration=24, slide_every=8, bullet_every=3, cuts=((15, 2),))
    path = render(spec, folder / "talk.mp4", size="640x360", audio_file=speech_wav(folder / "talk.wav", OFFSETS, 24))
    truth = [(w, o + a, o + b) for o in OFFSETS for w, a, b in beckett_words()]
    return path, truth


def frames(root) -> list[tuple[str, float]]:
    return [(r["kind"], r["t"]) for r in map(json.loads, (root / "frames.jsonl").read_text().splitlines())]


def test_following_to_the_end_gives_what_the_live_run_gave(cht: Cht, talk, tmp_path):
    path, truth = talk
    live = cht.run("record", "--fast", "--no-ui", "--language", "en", "--session", "live", str(path))
    assert live.returncode == 0, live.stderr
    root = cht.session_dir("live")
    copy = tmp_path / "share" / "live"  # the same recording, as another machine would see it
    shutil.copytree(root / "segments", copy / "segments")
    shutil.copy(root / "manifest.json", copy / "manifest.json")

    later = cht.run("follow", str(copy), "--no-ui", "--language", "en")
    assert later.returncode == 0, later.stderr
    ours, theirs = frames(copy), frames(root)
    assert [k for k, _ in ours] == [k for k, _ in theirs] and len(ours) >= 4, (ours, theirs)
    assert all(abs(a - b) <= 1 / 30 + 1e-3 for (_, a), (_, b) in zip(ours, theirs)), (ours, theirs)
    heard_live, heard_later = transcript_words(root), transcript_words(copy)
    assert [w for w, _, _ in heard_later] == [w for w, _, _ in heard_live]
    assert all(abs(a[1] - b[1]) <= 0.05 for a, b in zip(heard_later, heard_live))
    assert sum(bool(v) for v in match(truth, heard_later).values()) >= len(truth) - 2
    assert json.loads((copy / "audio" / "waveform.json").read_text())["length"] >= 23 * 100


def test_follow_ends_when_the_recording_it_follows_stops(cht: Cht, talk):
    path, truth = talk
    recorder = cht.start("record", "--no-analyze", "--no-ui", "--session", "elsewhere", str(path))  # real pace
    try:
        wait_for(lambda: (cht.session_dir("elsewhere") / "segments").exists(), 20, what="the recording")
        follower = cht.start("follow", "elsewhere", "--no-ui", "--language", "en")
        out, err = follower.communicate(timeout=120)
    finally:
        for proc in (recorder, locals().get("follower")):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert recorder.wait(5) == 0 and follower.returncode == 0, err
    root = cht.session_dir("elsewhere")
    assert cht.manifest("elsewhere")["state"] == "stopped"
    assert frames(root)[0][0] == "start" and len(frames(root)) >= 4
    heard = transcript_words(root)
    assert sum(bool(v) for v in match(truth, heard).values()) >= len(truth) - 2, heard
    index = json.loads((root / "transcript" / "index.json").read_text())
    assert index["complete"], index


class Faulty(Stage):
    """A fault the real stages cannot be made to show on demand: it raises on PCM."""

    name = "faulty"
    consumes = frozenset({"pcm"})

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def on_pcm(self, chunk: PcmChunk) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"bad sample {self.calls}")


def test_a_stage_that_raises_is_switched_off_and_the_rest_goes_on(talk, tmp_path, caplog):
    path, truth = talk
    session = Session.create(tmp_path / "data", "faulty")
    bus = ev.EventBus()
    warnings: list[str] = []
    bus.subscribe(lambda e: isinstance(e, ev.Warning) and warnings.append(e.message))
    done = threading.Event()
    bus.subscribe(lambda e: isinstance(e, ev.SessionStopped) and done.set())
    rec = live_recording(session, str(path), bus, tmp_path / "cache")
    broken, hiccup = Faulty(failures=10**9), Faulty(failures=1)
    hiccup.name = "hiccup"
    rec.follower.stages += [broken, hiccup]
    rec.start()
    assert rec.wait(120)
    assert rec.manifest.state == "stopped" and rec.manifest.reason == "end of source"
    assert broken not in rec.follower.stages and broken.calls == 3, "off after three errors"
    assert hiccup in rec.follower.stages and hiccup.calls > 20, "one bad sample is skipped, the stage goes on"
    assert any("faulty is off for this session" in w for w in warnings), warnings
    assert any("hiccup: a sample was skipped" in w for w in warnings), warnings
    assert "bad sample 1" in caplog.text
    assert len(frames(session.root)) >= 4
    assert json.loads((session.root / "audio" / "waveform.json").read_text())["length"] >= 23 * 100
    heard = transcript_words(session.root)
    assert sum(bool(v) for v in match(truth, heard).values()) >= len(truth) - 2, heard


def test_audio_frames_reach_the_stages_joined_a_fragment_at_a_time():
    """AAC decodes in 21 ms frames; handed on one by one, the transcript's once-a-second step
    fired on a fragment's first frame. Contiguous frames are joined (up to 2 s), a gap starts
    a new piece, a picture passes at once (each kind stays in order), and no sample is lost."""
    frame = 341  # what one 1024-sample AAC frame at 48 kHz resamples to at 16 kHz (about)
    pieces = [PcmChunk(k * frame / PCM_RATE, np.full(frame, k, np.int16)) for k in range(47)]  # ~1 s
    after_gap = PcmChunk(5.0, np.full(frame, 99, np.int16))
    picture = VideoSample(0.5, None)
    items = list(joined_pcm([*pieces[:20], picture, *pieces[20:], after_gap]))
    assert items[0] is picture  # pictures pass at once; audio follows when it is whole
    audio = [i for i in items if isinstance(i, PcmChunk)]
    assert [round(a.t, 3) for a in audio] == [0.0, 5.0]
    assert np.array_equal(audio[0].samples, np.concatenate([p.samples for p in pieces]))
    long = [PcmChunk(k * frame / PCM_RATE, np.zeros(frame, np.int16)) for k in range(200)]  # 4.3 s
    joined = list(joined_pcm(long))
    assert [len(j.samples) for j in joined][:2] == [frame * 94] * 2 and sum(len(j.samples) for j in joined) == frame * 200
