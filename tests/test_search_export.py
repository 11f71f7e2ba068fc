"""Search (SQLite FTS5) and exports, on sessions recorded with the real model and real
speech: subtitles that real parsers accept and ffmpeg muxes, Markdown notes whose images
resolve, search while recording, ranking and hostile queries."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import av
import pytest
import srt
import webvtt
from markdown_it import MarkdownIt

from cht.index.search import SearchIndex
from cht.media.ffmpeg import ffmpeg_exe
from cht.transcribe.store import TranscriptLine, read_lines
from conftest import Cht, wait_for
from speech import make_speech_video, speech_wav
from synthetic import lecture, render

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """A session with two spoken passages, recorded with --fast."""
    tmp = tmp_path_factory.mktemp("spoken")
    cht = Cht(tmp / "data")
    src = tmp / "two.mp4"
    make_speech_video(src, [1.0, 13.0], 24.0)
    result = cht.run("record", str(src), "--session", "talk", "--fast", "--language", "en", timeout=180)
    assert result.returncode == 0, result.stderr
    return cht


def ms(stamp: str) -> int:
    """'00:01:02.345' -> 62345."""
    h, m, rest = stamp.split(":")
    return round((int(h) * 3600 + int(m) * 60 + float(rest)) * 1000)


def word_times(cht: Cht, session: str) -> tuple[set[int], set[int]]:
    lines = read_lines(cht.session_dir(session) / "transcript.jsonl")
    starts = {round(w.start * 1000) for line in lines for w in line.words}
    ends = {round(w.end * 1000) for line in lines for w in line.words}
    return starts, ends


def test_subtitles_parse_keep_the_word_times_and_mux_into_the_first_segment(spoken: Cht, tmp_path):
    vtt, srt_path = tmp_path / "talk.vtt", tmp_path / "talk.srt"
    assert spoken.run("export", "talk", "--format", "vtt", "-o", str(vtt)).returncode == 0
    assert spoken.run("export", "talk", "--format", "srt", "-o", str(srt_path)).returncode == 0
    starts, ends = word_times(spoken, "talk")
    parsed_vtt = webvtt.read(str(vtt))
    parsed_srt = list(srt.parse(srt_path.read_text()))
    assert len(parsed_vtt) == len(parsed_srt) >= 4
    for a, b in zip(parsed_vtt, parsed_srt):
        assert ms(a.start) == round(b.start.total_seconds() * 1000) in starts
        assert ms(a.end) == round(b.end.total_seconds() * 1000) in ends
        assert a.text == b.content and 0 < len(a.text.splitlines()) <= 2
        assert all(len(row) <= 42 for row in a.text.splitlines())
    text = " ".join(c.text for c in parsed_vtt).lower()
    assert "fail better" in text.replace("\n", " ") or "failed better" in text

    per = tmp_path / "per.vtt"
    assert spoken.run("export", "talk", "--format", "vtt", "--per-segment", "-o", str(per)).returncode == 0
    segment_vtt = tmp_path / "per.seg_00000.vtt"
    muxed = tmp_path / "muxed.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(spoken.session_dir("talk") / "segments" /
                    "seg_00000.mp4"), "-i", str(segment_vtt), "-map", "0", "-map", "1", "-c", "copy",
                    "-c:s", "mov_text", str(muxed)], check=True)
    with av.open(str(muxed)) as container:
        stream = container.streams.subtitles[0]
        shown = [round(float(p.pts * stream.time_base) * 1000) for p in container.demux(stream)
                 if p.size > 2]  # mov_text: a 2-byte length, then the text; empty ones clear the screen
    assert shown == [ms(c.start) for c in webvtt.read(str(segment_vtt))]


def test_json_export_holds_the_session_in_one_document(spoken: Cht, tmp_path):
    out = tmp_path / "talk.json"
    assert spoken.run("export", "talk", "--format", "json", "-o", str(out)).returncode == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "cht.export/1"
    assert doc["manifest"]["id"] == "talk" and doc["manifest"]["segments"]
    assert doc["waveform"]["160"] == "audio/waveform.json"
    assert (Path(doc["session_dir"]) / doc["waveform"]["160"]).exists()
    spoken_lines = [line for line in read_lines(spoken.session_dir("talk") / "transcript.jsonl") if line.text]
    assert [line["text"] for line in doc["transcript"]] == [line.text for line in spoken_lines]
    txt = spoken.run("export", "talk", "--format", "txt")
    assert txt.returncode == 0 and txt.stdout.count("\n") == len(spoken_lines)


def test_markdown_notes_of_a_lecture_render_with_every_image_resolving(tmp_path):
    cht = Cht(tmp_path / "data")
    spec = lecture(duration=30.0, slide_every=10.0, bullet_every=4.0, cuts=())
    src = render(spec, tmp_path / "lecture.mp4", size="960x540",
                 audio_file=speech_wav(tmp_path / "speech.wav", [1.0, 16.0], 30.0))
    result = cht.run("record", str(src), "--session", "lecture", "--fast", "--language", "en", timeout=180)
    assert result.returncode == 0, result.stderr
    notes = tmp_path / "notes" / "lecture.md"
    assert cht.run("export", "lecture", "--format", "md", "-o", str(notes)).returncode == 0
    tokens = MarkdownIt().parse(notes.read_text())
    images = [child.attrs["src"] for t in tokens if t.children for child in t.children if child.type == "image"]
    frames = [json.loads(row) for row in (cht.session_dir("lecture") / "frames.jsonl").read_text().splitlines()]
    assert len(images) == len(frames) >= 3
    for src_ref in images:
        assert not Path(src_ref).is_absolute()
        assert (notes.parent / src_ref).is_file(), src_ref
    html = MarkdownIt().render(notes.read_text())
    assert html.count("<img") == len(images) and "better" in html.lower()


def test_search_finds_a_phrase_while_it_is_still_recording(cht: Cht, tmp_path):
    src = tmp_path / "one.mp4"
    make_speech_video(src, [1.0], 40.0)
    proc = cht.start("record", str(src), "--session", "live", "--language", "en")
    transcript = cht.session_dir("live") / "transcript.jsonl"
    try:
        wait_for(lambda: (cht.data_dir / "index.sqlite").exists(), 30, what="the index")
        index = SearchIndex(cht.data_dir)
        appeared = found = None
        deadline = time.monotonic() + 40
        while found is None and time.monotonic() < deadline:
            if appeared is None and transcript.exists() and "better" in transcript.read_text().lower():
                appeared = time.monotonic()
            if index.search('"fail better"') or index.search('"failed better"'):
                found = time.monotonic()
            time.sleep(0.1)
        assert appeared and found, "the phrase never became searchable"
        assert found - appeared <= 5.0
        assert proc.poll() is None, "found while the session is still recording"
        hit = (index.search('"fail better"') or index.search('"failed better"'))[0]
        assert hit.session == "live" and 8.0 <= hit.t <= 10.5  # "fail" at 1 + 8.16 s
    finally:
        Cht.stop(proc)


def test_the_exact_phrase_ranks_above_scattered_words_and_odd_queries_are_safe(tmp_path):
    index = SearchIndex(tmp_path)
    said = ["again we try", "and then we decided that we would try again some other day",
            "Café crème at the Gödel conference", "x-ray vision"]
    index.add("s1", [TranscriptLine(i, 10.0 * i, 10.0 * i + 3, text, [], [10.0 * i, 10.0 * i + 5])
                     for i, text in enumerate(said)], started=time.time(), source="test")
    hits = index.search("try again")
    assert [h.text for h in hits] == [said[1], said[0]]
    assert [h.text for h in index.search("cafe creme")] == [said[2]]
    assert [h.text for h in index.search("GODEL")] == [said[2]]
    assert [h.text for h in index.search("conf*")] == [said[2]]
    assert [h.text for h in index.search("try -decided")] == [said[0]]
    assert [h.text for h in index.search('"we try"')] == [said[0]]
    for odd in ["", "   ", '"', '"unclosed phrase', "-", "*", "-*", "x-ray", 'a"b', "NEAR(", "AND OR NOT",
                "col:value", "^start", "(((", "ünïcödé*"]:
        index.search(odd)  # no exception: whatever was typed
    assert index.search("") == []


def test_a_phrase_said_across_two_committed_lines_is_found_live_and_after_a_reindex(tmp_path):
    """The live transcript commits a few words at a time (a line may end mid-sentence): the
    index joins lines into sentences, so "fail better" is found though "Fail" and "better."
    were written 1.3 s apart, and its hit points at "Fail"."""
    from cht.transcribe.store import Word

    def line(i: int, start: float, text: str, step: float = 0.35) -> TranscriptLine:
        words = [Word(round(start + k * step, 2), round(start + k * step + 0.3, 2), f" {w}", 0.9)
                 for k, w in enumerate(text.split())]
        return TranscriptLine(i, start, words[-1].end, text, words, [start, words[-1].end])

    said = [line(0, 20.7, "Ask what you"), line(1, 21.94, "can do for your country."), line(2, 23.58, "ever"),
            line(3, 24.54, "tried ever"), line(4, 26.08, "failed ever"), line(5, 27.0, "No matter, try again."),
            line(6, 29.79, "Fail again."), line(7, 31.19, "Fail"), line(8, 32.5, "better."),
            line(9, 36.0, "after a pause")]
    live, rebuilt = SearchIndex(tmp_path / "live"), SearchIndex(tmp_path / "rebuilt")
    for piece in said:
        live.add("s", [piece], started=time.time(), source="test")
    rebuilt.replace_session("s", said, started=time.time(), source="test")
    for index in (live, rebuilt):
        hits = index.search('"fail better"')
        assert [(h.text, h.t) for h in hits] == [("Fail better.", 31.19)]
        assert [h.text for h in index.search('"your country"')] == ["Ask what you can do for your country."]
        assert [h.text for h in index.search('"ever failed"')] == ["ever tried ever failed ever No matter, try again."]
        assert sorted(h.text for h in index.search("fail")) == ["Fail again.", "Fail better."]
        assert [h.text for h in index.search("pause")] == ["after a pause"]  # 3.2 s later: a row of its own
    live.add("s", [said[8]], source="test")  # a line added twice is not joined twice
    assert [h.text for h in live.search("better")] == ["Fail better."]


def test_search_cli_and_a_deleted_index_loses_nothing(spoken: Cht):
    for query in ['"fail better"', "", '"', "-", "*", "fail*", "Fäil"]:
        result = spoken.run("search", query)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (query, result.stderr)
    before = spoken.run("search", "matter").stdout
    assert "talk" in before and "/session/talk?t=" in before
    for path in spoken.data_dir.glob("index.sqlite*"):
        path.unlink()
    assert spoken.run("reindex").returncode == 0
    assert spoken.run("search", "matter").stdout == before
    bad = spoken.run("search", "x", "--since", "last tuesday")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert spoken.run("export", "talk", "--format", "docx").returncode == 2
    assert spoken.run("export", "talk", "--format", "md", "--per-segment").returncode == 2
    assert spoken.run("export", "nope", "--format", "srt").returncode == 2
