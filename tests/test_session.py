"""Manifest derivation, atomic writes and session ids — no recording needed."""

import json

import pytest

from cht.errors import SessionError
from cht.session import Manifest, Session, SegmentFacts, atomic_write_json, derive, epoch


def fact(index, run, run_start, duration, started=1_000_000.0, origin=None):
    return SegmentFacts(f"segments/seg_{index:05d}.mp4", index, run, run_start, origin, started, duration, 100)


def test_runs_chain_and_gaps_are_explicit():
    segments, gaps = derive([
        fact(0, 0, 0.0, 30.0),
        fact(1, 0, 0.0, 12.5),             # same run: rotates seamlessly at 30.0
        fact(2, 1, 45.0, 10.0, 1_000_045.0),  # new run after an outage: a gap 42.5 .. 45
    ])
    assert [s.global_start for s in segments] == [0.0, 30.0, 45.0]
    assert [(g.start, g.end) for g in gaps] == [(42.5, 45.0)]
    assert segments[1].started_at == segments[0].ended_at
    assert epoch(segments[2].started_at) == pytest.approx(1_000_045.0)


def test_live_runs_sit_at_their_wall_clock_distance_from_the_origin():
    segments, gaps = derive([
        fact(0, 0, None, 10.0, started=500.0),  # the first run defines global 0
        fact(1, 1, None, 4.0, started=537.25, origin=500.0),  # a client came back 27.25 s later
    ])
    assert [s.global_start for s in segments] == [0.0, 37.25]
    assert [(g.start, g.end) for g in gaps] == [(10.0, 37.25)]


def test_a_run_never_starts_inside_the_previous_one():
    segments, gaps = derive([fact(0, 0, 0.0, 10.0), fact(1, 1, 9.0, 5.0)])
    assert segments[1].global_start == 10.0
    assert gaps == []


def test_empty_segments_are_left_out():
    segments, _ = derive([fact(0, 0, 0.0, 10.0), fact(1, 1, 12.0, 0.0), fact(2, 2, 15.0, 3.0)])
    assert [s.file for s in segments] == ["segments/seg_00000.mp4", "segments/seg_00002.mp4"]


def test_manifest_round_trip_and_version(tmp_path):
    segments, gaps = derive([fact(0, 0, 0.0, 10.0), fact(1, 1, 12.0, 3.0)])
    manifest = Manifest("s1", "demo", "stopped", "stopped by user", segments[0].started_at, segments, gaps)
    atomic_write_json(tmp_path / "m.json", manifest.to_dict())
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["version"] == 1 and data["duration"] == 15.0
    assert Manifest.from_dict(data) == manifest
    data["version"] = 99
    with pytest.raises(SessionError, match="cht rebuild"):
        Manifest.from_dict(data)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 65, "sp ace", "é"])
def test_session_ids_are_checked(tmp_path, bad):
    with pytest.raises(SessionError, match="not a valid session id"):
        Session.create(tmp_path, bad)


def test_create_is_exclusive(tmp_path):
    Session.create(tmp_path, "one")
    with pytest.raises(SessionError, match="already exists"):
        Session.create(tmp_path, "one")


def test_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(SessionError, match="not writable"):
        Session.create(blocker / "data")


def test_sessions_created_at_once_from_many_threads_all_succeed(tmp_path):
    """The ingest opens a session per client, possibly in the same instant (found by bench/ingest.py:
    a shared write-test file made one of four concurrent creations fail)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: Session.create(tmp_path), range(16)))
    assert len({s.id for s in made}) == 16
