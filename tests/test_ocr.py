"""Slide text (issue 16): a generated deck with known text (DejaVu Sans and Mono, light and
dark, a code slide, a bullet added to an unchanged title, a camera with no text; H.264 720p)
recorded through `cht record`, read live by the OCR stage, then searched, exported as
chapters, shown on the page, and analysed again offline with a corrupt keyframe among its
captures. One recording is shared by the module; OCR runs only on the keyframes cht saves.
"""

from __future__ import annotations

import json
import shutil

import pytest
import webvtt
from ocr_deck import SLIDE_ONLY, cer, render, slides
from PIL import Image

from cht.analyze.scenes import read_frames
from cht.index.export import export
from cht.index.search import SearchIndex
from cht.ocr.reader import read_lines
from cht.ocr.text import read_ocr
from cht.session import Session
from conftest import Cht, wait_for
from test_web import browser, free_port, poll  # noqa: F401 - browser: one Chromium for the module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deck(tmp_path_factory):
    """(Cht, the deck's truth, the OCR records as the live run wrote them)."""
    tmp = tmp_path_factory.mktemp("ocr")
    truth = slides()
    video = render(truth, tmp / "deck.mp4")
    cht = Cht(tmp / "data")
    result = cht.run("record", str(video), "--session", "deck", "--fast", "--no-transcribe", "--no-ui", timeout=180)
    assert result.returncode == 0, result.stderr
    return cht, truth, read_ocr(cht.session_dir("deck"))


def shown_at(records, shown):
    """The keyframe that shows this slide: the first one saved while it was on screen."""
    inside = [r for r in records if shown.start - 0.5 <= r.t < shown.start + shown.length - 0.5]
    assert inside, f"no keyframe for the slide at {shown.start} s: {[r.t for r in records]}"
    return inside[0]


def test_every_slide_is_read_with_at_most_1pc_character_errors_and_its_title(deck):
    cht, truth, records = deck
    assert len(records) == len(read_frames(cht.session_dir("deck"))) == len(truth)  # every keyframe read once
    edits = chars = 0
    for shown in truth:
        record = shown_at(records, shown)
        if not shown.title:  # the camera: no text, no title
            assert record.lines == [] and record.title == "", record
            continue
        assert record.title == shown.title, (shown.start, record.title)
        found = [line.text for line in record.lines]
        assert len(found) == len(shown.all_lines), (shown.start, found)
        for got, want in zip(found, shown.all_lines):
            e, n = cer(got, want.strip())  # indentation is layout, not characters
            edits, chars = edits + e, chars + n
    assert chars > 300 and edits / chars <= 0.01, f"{edits} errors in {chars} characters"


def test_a_frame_with_no_text_has_no_lines(tmp_path):
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (1280, 720), "#2B2B2B").save(blank, quality=90)
    assert read_lines(blank) == ([], 720)


def test_a_word_only_on_a_slide_is_found_at_the_slide_time(deck):
    cht, truth, _ = deck
    shown = next(s for s in truth if any(SLIDE_ONLY in line for line in s.lines))
    result = cht.run("search", SLIDE_ONLY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("on slide at") == 1, result.stdout
    index = SearchIndex(cht.data_dir)  # filled live, while it recorded: no reindex ran
    try:
        [hit] = index.search(SLIDE_ONLY)
        assert hit.kind == "slide" and hit.session == "deck" and abs(hit.t - shown.start) <= 1.0, hit
        assert index.search(SLIDE_ONLY, kind="speech") == []
        assert [h.kind for h in index.search(SLIDE_ONLY, kind="slide")] == ["slide"]
        [shared] = index.search("uphill")  # on a slide and on the same slide with one more bullet: one hit
        assert shared.kind == "slide" and shared.t < 1.0, shared
    finally:
        index.close()
    bad = cht.run("search", SLIDE_ONLY, "--kind", "slides")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "speech or slide" in bad.stderr


def test_chapters_are_the_slide_titles_in_order_at_the_slide_times(deck, tmp_path):
    cht, truth, _ = deck
    expected = []  # a new title starts a chapter; an added bullet and the camera do not
    for shown in truth:
        if shown.title and (not expected or expected[-1][1] != shown.title):
            expected.append((shown.start, shown.title))
    vtt = tmp_path / "deck.chapters.vtt"
    result = cht.run("export", "deck", "-f", "chapters", "-o", str(vtt))
    assert result.returncode == 0, result.stderr
    cues = webvtt.read(str(vtt))
    assert [c.text for c in cues] == [title for _, title in expected]
    for cue, (start, _) in zip(cues, expected):
        assert abs(cue.start_in_seconds - start) <= 1.0, (cue.start, start)
    assert [c.end_in_seconds for c in cues[:-1]] == [c.start_in_seconds for c in cues[1:]]
    session = Session.open(cht.data_dir, "deck")  # the same exports in-process: a CLI start each is slow here
    export(session, "json", tmp_path / "deck.json")
    document = json.loads((tmp_path / "deck.json").read_text())
    assert [c["title"] for c in document["chapters"]] == [title for _, title in expected]
    assert {s["file"] for s in document["slides"]} == {f["file"] for f in document["frames"]}
    notes = tmp_path / "notes" / "deck.md"
    export(session, "md", notes)
    text = notes.read_text()
    heads = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert heads == [title for _, title in expected]
    assert f"- The {SLIDE_ONLY} curve is fastest" in text  # the slide's lines, as bullets


def test_offline_analysis_reads_the_same_text_and_skips_a_corrupt_capture(deck, tmp_path):
    cht, truth, live = deck
    copy = Cht(tmp_path / "data")
    shutil.copytree(cht.data_dir / "sessions", copy.data_dir / "sessions")
    root = copy.session_dir("deck")
    (root / "frames" / "000002.000-manual.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" * 20)
    (root / "frames" / "000002.000-manual.thumb.jpg").write_bytes(b"\xff\xd8 nor this")
    with open(root / "frames.jsonl", "a") as f:
        f.write(json.dumps({"t": 2.0, "file": "frames/000002.000-manual.jpg",
                            "thumb": "frames/000002.000-manual.thumb.jpg", "score": 0.0, "kind": "manual"}) + "\n")
    result = copy.run("analyze", "deck", timeout=180)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "000002.000-manual.jpg" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:") and "Traceback" not in result.stderr, result.stderr
    offline = read_ocr(root)
    assert "frames/000002.000-manual.jpg" not in {r.file for r in offline}
    assert [(round(r.t, 1), r.title, r.text) for r in offline] == [(round(r.t, 1), r.title, r.text) for r in live]
    assert "on slide at" in copy.run("search", SLIDE_ONLY).stdout  # analyze reindexed the session


def test_the_page_shows_keyframe_text_and_chapters_that_seek(deck, browser):
    from cht.web.app import UiState
    from cht.web.server import WebServer

    cht, truth, live = deck
    web = WebServer(UiState(cht.data_dir), host="127.0.0.1", port=free_port(), fixed_port=True)
    web.start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            page.goto(web.url("deck"))
            poll(page, "window.cht && window.cht.ready", 15, "the page")
            captions = page.eval_on_selector_all("#thumbs figure figcaption", "els => els.map(e => e.textContent)")
            assert captions == [r.text for r in live]
            assert any(SLIDE_ONLY in c for c in captions)
            chapters = page.eval_on_selector_all("#chapters .chapter", "els => els.map(e => e.textContent)")
            assert len(chapters) == 4 and chapters[2].endswith("Training loop in Python"), chapters
            page.click("#chapters .chapter >> nth=2")
            poll(page, "Math.abs(window.cht.globalTime() - 12) < 1", 10, "the seek to the third chapter")
            page.fill("#q", SLIDE_ONLY)
            page.press("#q", "Enter")
            page.wait_for_selector("#hits div[data-kind=slide]", timeout=10_000)
            assert "on slide at 0:00:08" in page.inner_text("#hits div")
        finally:
            page.close()
    finally:
        web.stop()


def test_the_demo_shows_slide_text_live_on_its_page_and_reads_a_capture(tmp_path, browser):
    """`cht demo` as a newcomer runs it: slide text under the thumbnails and a chapter while it
    records; a capture made on the page after it loaded gets its text through the live events."""
    cht = Cht(tmp_path / "data")
    port = free_port()
    proc = cht.start("demo", "--session", "demo", "--no-transcribe", "--port", str(port))
    root = cht.session_dir("demo")
    try:
        first = wait_for(lambda: next((r for r in read_ocr(root) if r.lines), None), 60, what="the first slide's text")
        assert first.title == "Welcome to the cht demo", first
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            page.goto(f"http://127.0.0.1:{port}/session/demo")
            poll(page, "window.cht && window.cht.ready", 20, "the page")
            poll(page, "[...document.querySelectorAll('#thumbs figcaption')].some((c) => "
                       "c.textContent.includes('Welcome to the cht demo'))", 20, "the first slide's text")
            poll(page, "document.querySelector('#chapters .chapter')?.textContent.includes('Welcome')", 20, "a chapter")
            page.click("#capture")
            poll(page, "[...document.querySelectorAll('#thumbs figure')].some((f) => "
                       "f.querySelector('img').src.includes('-manual') && f.querySelector('figcaption').textContent)",
                 30, "the capture's text, live")
        finally:
            page.close()
        manual = next(f for f in read_frames(root) if f.kind == "manual")
        assert manual.file in {r.file for r in read_ocr(root)}
        index = SearchIndex(cht.data_dir)
        try:
            assert [h.kind for h in index.search('"cht demo"', session="demo")][:1] == ["slide"]
        finally:
            index.close()
    finally:
        code, _, err = Cht.stop(proc)
    assert code == 0, err


def test_a_capture_is_read_before_a_backlog_of_slides(deck, tmp_path):
    """Someone who clicks capture waits on the page for its text: it goes before the slides
    queued earlier, even ones found before it."""
    from cht import events as ev
    from cht.stages.base import StageConfig, StageContext
    from cht.stages.ocr import OcrStage

    cht, _, _ = deck
    root = tmp_path / "deck"
    shutil.copytree(cht.session_dir("deck"), root)
    (root / "ocr.jsonl").unlink()
    slides_saved = read_frames(root)
    assert len(slides_saved) >= 4
    shutil.copy(root / slides_saved[0].file, root / "frames" / "000001.500-manual.jpg")
    with open(root / "frames.jsonl", "a") as f:
        f.write(json.dumps({"t": 1.5, "file": "frames/000001.500-manual.jpg", "thumb": slides_saved[0].thumb,
                            "score": 0.0, "kind": "manual"}) + "\n")
    session = Session.open(cht.data_dir, "deck")
    context = StageContext("deck", root, root, ev.EventBus(), session.current_manifest)
    stage = OcrStage(context, StageConfig())
    stage.finish()
    order = [json.loads(line)["file"] for line in (root / "ocr.jsonl").read_text().splitlines()]  # as read
    assert order[0] == "frames/000001.500-manual.jpg", order
    assert sorted(order[1:], key=lambda f: float(f.split("/")[1][:10])) == order[1:], "then the oldest first"
    assert len(order) == len(slides_saved) + 1
