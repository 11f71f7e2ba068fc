"""Export a session: subtitles on the global clock (or per segment, on its own clock),
plain text, Markdown notes with the slides, chapters from slide titles (WebVTT), or
everything as one JSON document."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from cht.analyze.scenes import FrameRecord, read_frames
from cht.console import fmt_time
from cht.errors import SessionError
from cht.index.cues import cues, timestamp, to_srt, to_vtt
from cht.ocr.text import Chapter, SlideText, chapters, read_ocr
from cht.session import Manifest, Session
from cht.speakers import store as speaker_store
from cht.speakers.attribute import with_speakers
from cht.transcribe.store import TranscriptLine, read_spoken

FORMATS = ("srt", "vtt", "txt", "md", "json", "chapters")
JSON_SCHEMA = "cht.export/1"
MARK = ".cht-export"  # in a `<name>_files/` folder: cht wrote it, so cht may replace it
_BULLET = re.compile(r"^\s*[-–•*·‣▪]\s+")  # a bullet sign drawn on the slide
WAVEFORM_LEVELS = {160: "audio/waveform.json", 1600: "audio/waveform-1600.json", 16000: "audio/waveform-16000.json"}


def export(session: Session, fmt: str, out: Path | None, *, per_segment: bool = False) -> list[Path]:
    """Write the export; a target that cannot be written is a SessionError naming it."""
    try:
        return _export(session, fmt, out, per_segment=per_segment)
    except OSError as exc:
        where = out or exc.filename
        raise SessionError(f"cannot write {where} ({exc.strerror or exc}): choose another --output") from None


def _export(session: Session, fmt: str, out: Path | None, *, per_segment: bool = False) -> list[Path]:
    """Returns the files written (none when `out` is None: printed instead)."""
    if fmt not in FORMATS:
        raise SessionError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if per_segment and fmt not in ("srt", "vtt"):
        raise SessionError("--per-segment is for subtitles: use it with --format srt or vtt")
    manifest = session.current_manifest()
    lines = with_speakers(session.root, read_spoken(session.root))  # split where the speaker changes
    if fmt == "md":
        target = out or Path(f"{session.id}.md")
        return markdown(session, manifest, lines, target)
    if per_segment:
        return _per_segment(manifest, lines, fmt, out or Path(f"{session.id}.{fmt}"))
    text = {"srt": lambda: to_srt(cues(lines)), "vtt": lambda: to_vtt(cues(lines)),
            "txt": lambda: plain(lines), "json": lambda: json.dumps(document(session, manifest, lines),
                                                                     indent=2, ensure_ascii=False) + "\n",
            "chapters": lambda: vtt_chapters(chapters(read_ocr(session.root), manifest.duration))}[fmt]()
    if out is None:
        print(text, end="")
        return []
    _write(out, text)
    return [out]


def vtt_chapters(items: list[Chapter]) -> str:
    """WebVTT chapters (`<track kind="chapters">`): one cue per slide title."""
    blocks = [f"{i}\n{timestamp(c.start, '.')} --> {timestamp(c.end, '.')}\n{c.title}\n"
              for i, c in enumerate(items, 1)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def plain(lines: list[TranscriptLine]) -> str:
    return "".join(f"[{fmt_time(line.start)}] {_said_by(line)}{line.text}\n" for line in lines)


def _said_by(line: TranscriptLine) -> str:
    """`Ada Lovelace: ` before what a known speaker said; nothing when unknown."""
    name = getattr(line, "name", "")
    return f"{name}: " if name else ""


def _per_segment(manifest: Manifest, lines: list[TranscriptLine], fmt: str, out: Path) -> list[Path]:
    """One subtitle file per segment, on the segment's own clock, to mux with that file."""
    written = []
    everything = cues(lines)
    for segment in manifest.segments:
        inside = [c for c in everything if segment.global_start <= c.start < segment.global_end]
        render = to_srt if fmt == "srt" else to_vtt
        path = out.with_name(f"{out.stem}.{Path(segment.file).stem}{out.suffix or '.' + fmt}")
        _write(path, render(inside, offset=segment.global_start))
        written.append(path)
    return written


def document(session: Session, manifest: Manifest, lines: list[TranscriptLine]) -> dict:
    """Everything about a session in one JSON document (schema `cht.export/1`, see README).
    File names are relative to `session_dir`."""
    return {
        "schema": JSON_SCHEMA,
        "session_dir": str(session.root),
        "manifest": manifest.to_dict(),
        "frames": [asdict(f) for f in read_frames(session.root)],
        "slides": [asdict(s) for s in read_ocr(session.root)],
        "chapters": [asdict(c) for c in chapters(read_ocr(session.root), manifest.duration)],
        "waveform": {str(spp): name for spp, name in WAVEFORM_LEVELS.items() if (session.root / name).exists()},
        "speakers": [asdict(s) for s in speaker_store.read(session.root).speakers],
        "transcript": [{"chunk": line.chunk, "start": line.start, "end": line.end, "text": line.text,
                        "speaker": getattr(line, "speaker", ""), "name": getattr(line, "name", ""),
                        "language": line.language, "words": [asdict(w) for w in line.words]} for line in lines],
    }


def markdown(session: Session, manifest: Manifest, lines: list[TranscriptLine], target: Path) -> list[Path]:
    """Notes a student would want: each slide, then what was said while it was shown, with
    timestamps; images copied into `<name>_files/` beside the notes, linked relatively.
    The images go to a new folder first, which replaces `<name>_files/` only if cht made that
    one (it holds MARK): a folder of the user's by that name is never touched."""
    if target.name in ("", ".", "..") or target.is_dir():
        raise SessionError(f"--output {target} is a folder: name the notes file, e.g. {target / session.id}.md")
    assets = target.with_name(f"{target.stem}_files")
    if assets.exists() and not (assets / MARK).is_file():
        raise SessionError(f"{assets} exists and was not written by cht export: move it, or choose another --output")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{assets.name}.", dir=target.parent))
    try:
        written = _markdown(session, manifest, lines, target, work, assets.name)
        _swap(work, assets)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [assets / p.name if p.parent == work else p for p in written]


def _swap(work: Path, assets: Path) -> None:
    """Put the new images in place of cht's old ones (none: the old folder just goes)."""
    old = None
    if assets.exists():
        old = assets.with_name(f".{assets.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(assets, old)
    if any(p.name != MARK for p in work.iterdir()):
        os.replace(work, assets)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _markdown(session: Session, manifest: Manifest, lines: list[TranscriptLine], target: Path, work: Path,
              folder: str) -> list[Path]:
    (work / MARK).write_text("written by cht export; replaced by the next export to the same notes\n")
    frames = sorted(read_frames(session.root), key=lambda f: f.t)
    slides = {s.file: s for s in read_ocr(session.root)}
    heads = {c.start: c.title for c in chapters(list(slides.values()), manifest.duration)}
    parts = [f"# {session.id}\n",
             f"Recorded {manifest.started_at.replace('T', ' ')[:19]} from `{manifest.source}` · "
             f"{fmt_time(manifest.duration)} · {len(frames)} slide(s) · "
             f"{sum(len(line.words) or len(line.text.split()) for line in lines)} words\n"]
    if heads:
        parts.append("\nChapters:\n\n" + "".join(f"{i}. {_md_text(title)} ({fmt_time(t)})\n"
                                                for i, (t, title) in enumerate(heads.items(), 1)))
    gaps = list(manifest.gaps)
    sections: list[tuple[FrameRecord | None, list[TranscriptLine]]] = [(None, [])] + [(f, []) for f in frames]
    for line in lines:
        owner = 0
        for i, frame in enumerate(frames, 1):
            if frame.t <= line.start + 0.5:  # the slide on screen as the line began
                owner = i
        sections[owner][1].append(line)
    written = [target]
    for frame, said in sections:
        if frame is None and not said:
            continue
        if frame is not None:
            slide = slides.get(frame.file)
            if slide is not None and slide.t in heads:
                parts.append(f"\n## {_md_text(heads[slide.t])}\n")
            parts.append(f"\n### {fmt_time(frame.t)}" + (" (captured)" if frame.kind == "manual" else "") + "\n")
            image = session.root / frame.file
            if image.is_file():
                copy = work / Path(frame.file).name
                shutil.copyfile(image, copy)
                written.append(copy)
                parts.append(f"\n![Slide at {fmt_time(frame.t)}]({folder}/{copy.name})\n")
            if slide is not None:
                parts.append(_slide_bullets(slide))
        for line in said:
            while gaps and gaps[0].start <= line.start:
                gap = gaps.pop(0)
                parts.append(f"\n> *Not recorded: {fmt_time(gap.start)} – {fmt_time(gap.end)}*\n")
            who = f"**{_md_text(line.name)}:** " if getattr(line, "name", "") else ""
            parts.append(f"\n**[{fmt_time(line.start)}]** {who}{line.text}\n")
    _write(target, "".join(parts))
    return written


def _slide_bullets(slide: SlideText) -> str:
    """The slide's text under its picture: its lines as bullets, the title left out (it is
    the heading), a bullet sign the slide drew itself dropped."""
    items = [line.text for line in slide.lines if not (slide.title and line.text.strip() in slide.title)]
    items = [_BULLET.sub("", text) or text for text in items]
    return "\n" + "".join(f"- {_md_text(text)}\n" for text in items) if items else ""


def _md_text(text: str) -> str:
    """Text read off a slide, shown as text in Markdown (never as markup)."""
    return "".join("\\" + ch if ch in "\\`*_[]<>#|!" else ch for ch in text)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
