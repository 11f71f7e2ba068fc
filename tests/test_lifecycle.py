"""The lifecycle in-process: the events it publishes, in order, exactly once where it must."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cht import events as ev
from cht.config import RecordOptions
from cht.lifecycle import DATING_S, Lifecycle, Run
from cht.record.sources import parse_source
from cht.session import Session
from conftest import make_media, wait_for

pytestmark = pytest.mark.slow


def test_events_of_a_recording_with_a_recorder_death(tmp_path):
    src = parse_source(str(make_media(tmp_path / "src.mp4", 12)))
    session = Session.create(tmp_path / "data", "life")
    bus = ev.EventBus()
    seen: list[ev.Event] = []
    restarted: list[float] = []
    bus.subscribe(seen.append)
    bus.subscribe(lambda e: isinstance(e, ev.RecorderRestarted) and restarted.append(time.monotonic()))
    life = Lifecycle(session, src, RecordOptions(), bus, cache_dir=tmp_path / "cache")
    life.start()
    wait_for(lambda: life.manifest.duration >= 2.0, 15, what="2 s recorded")
    first = life.recorder_pid
    killed_at = time.monotonic()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: restarted and life.recorder_pid not in (None, first), 10, 0.01, what="the restart")
    # README: the watchdog restarts a dead recorder within a second (its tick is 0.25 s)
    assert restarted[0] - killed_at <= 1.0, restarted[0] - killed_at
    assert life.wait(30), "a file source ends the session"
    manifest = life.manifest

    names = [e.name for e in seen]
    assert names[0] == "SessionStarted" and names[-1] == "SessionStopped"
    assert names.count("WentLive") == 1
    assert names.count("RecorderRestarted") == 1
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    durations = [e.duration for e in seen if isinstance(e, ev.DurationChanged)]
    assert durations == sorted(durations) and len(durations) >= 4  # a tick a second
    starts = [e for e in seen if isinstance(e, ev.SegmentStarted)]
    assert [e.index for e in starts] == [0, 1]
    assert starts[1].global_start == manifest.segments[1].global_start
    stopped = seen[-1]
    assert stopped.state == "stopped" and stopped.reason == "end of source"
    assert manifest.state == "stopped" and len(manifest.gaps) == 1
    assert bus.since(seen[-3].seq) == seen[-2:]
    assert not session.is_recording()


def test_a_run_seen_in_the_middle_of_a_write_is_dated_by_its_tightest_look():
    """A listener probes its client's first seconds and writes them at once; a look in the
    middle of that write saw 2 of 4 s (CI, 2026-11-30). Later looks bound it tighter."""
    run, came = Run(1, 1, {}), 1000.0
    assert not run.look(2.021, came + 4.007, ended=False)  # half of the probed 4 s written
    assert not run.look(4.0, came + 4.25, ended=False)  # the rest landed
    assert not run.look(4.0, came + 4.5, ended=False)
    assert run.first_media_at is None and run.being_dated
    assert run.look(5.0, came + 4.007 + DATING_S, ended=False)  # watched long enough: dated
    assert run.first_media_at == pytest.approx(came + 0.25)
    ended = Run(2, 2, {})
    assert ended.look(3.0, came + 3.1, ended=True) and ended.first_media_at == pytest.approx(came + 0.1)

