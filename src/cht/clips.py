"""Cut a range of the global clock out of a session as one MP4.

A range may span segments and gaps: the parts that exist are joined back to back (the clip
has its own clock, starting at 0) and every gap inside is named, in what `cut` returns and as a
subtitle cue at the join. The video is stream-copied from the keyframe at or before FROM (no
re-encode, so cutting an hour costs what copying it costs); how far before FROM that keyframe
lies is reported. `exact` starts at FROM itself: only FROM → the next keyframe is re-encoded
(H.264; the copied rest keeps its own parameter sets, in-band through MPEG-TS), so an exact
200 s clip costs what a copy does; other codecs, or no keyframe after FROM in its segment,
re-encode the whole clip. The end needs no keyframe: the copy stops at the last frame before TO.

The transcript inside the range becomes a mov_text subtitle track and a sidecar `.vtt`, both on
the clip's own clock, built by the same cue code as `cht export`.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import av

from cht.errors import SessionError
from cht.index.cues import Cue, cues, to_vtt
from cht.media.ffmpeg import ffmpeg_exe, keyframe_times, probe_file
from cht.session import Gap, Manifest, Segment, Session
from cht.speakers.attribute import with_speakers
from cht.transcribe.store import read_spoken

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}
GAP_CUE_S = 2.0  # seconds the "not recorded" cue shows at a join


def parse_clock(text: str) -> float:
    """'1:02:03', '2:03', '90s', '1.5m', '90' -> seconds on the global clock (>= 0)."""
    value = text.strip().lower()
    match = _CLOCK.match(value)
    if match:
        hours, minutes, seconds = match.groups()
        if int(minutes) >= 60 and hours is not None or float(seconds) >= 60:
            raise ValueError(f"{text!r} is not a time: minutes and seconds go up to 59 (e.g. 1:02:03)")
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = value[len(number):].strip()
    try:
        seconds = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"{text!r} is not a time: use 1:02:03, 2:03, 90s or 90") from None
    if seconds < 0:
        raise ValueError(f"{text!r} is not a time: use 1:02:03, 2:03, 90s or 90")
    return seconds


@dataclass(frozen=True)
class Piece:
    """One segment's share of the clip."""

    segment: Segment
    local_from: float  # seconds in the segment file
    local_to: float

    @property
    def global_from(self) -> float:
        return self.segment.global_start + self.local_from

    @property
    def seconds(self) -> float:
        return self.local_to - self.local_from


@dataclass
class Clip:
    """What was cut: where it starts on the global clock and what is in it."""

    path: Path
    start: float  # global seconds of the clip's 0 (the keyframe at or before FROM, or FROM when exact)
    end: float  # global seconds where it ends
    early_s: float  # seconds the clip starts before the FROM asked for (0 when exact)
    seconds: float  # length of the clip's own clock (gaps left out)
    gaps: list[Gap] = field(default_factory=list)  # gaps inside the range, on the global clock
    cues: int = 0  # subtitle cues in the clip
    vtt: Path | None = None
    exact: bool = False
    reencoded_s: float | None = None  # exact: seconds re-encoded at the start (None: the whole clip was)


def plan(manifest: Manifest, start: float, end: float) -> tuple[list[Piece], list[Gap]]:
    """The segment pieces that cover [start, end) and the gaps between them."""
    if not manifest.segments:
        raise SessionError(f"session {manifest.id} has no media yet: nothing to cut")
    if end <= start:
        raise SessionError(f"TO ({end:g} s) must be after FROM ({start:g} s)")
    if start >= manifest.duration:
        raise SessionError(f"FROM ({start:g} s) is past the end of session {manifest.id} "
                           f"({manifest.duration:.1f} s): `cht info {manifest.id}` shows its segments")
    end = min(end, manifest.duration)
    pieces = []
    for seg in manifest.segments:
        a, b = max(start, seg.global_start), min(end, seg.global_end)
        if b - a > 0.001:
            pieces.append(Piece(seg, a - seg.global_start, b - seg.global_start))
    if not pieces:
        raise SessionError(f"nothing was recorded between {start:g} s and {end:g} s: it is all a gap "
                           f"(`cht info {manifest.id}` shows the gaps)")
    gaps = [Gap(round(max(g.start, start), 3), round(min(g.end, end), 3), g.reason)
            for g in manifest.gaps if g.end > start and g.start < end and g.end > g.start]
    return pieces, gaps


def snap_to_keyframe(piece: Piece, root: Path) -> Piece:
    """The first piece starts at the keyframe at or before its start (an audio-only file: as is)."""
    times = keyframe_times(root / piece.segment.file)
    if not times:
        return piece
    i = bisect_right(times, piece.local_from + 1e-6) - 1
    return Piece(piece.segment, times[max(i, 0)], piece.local_to)


def cut(session: Session, start: float, end: float, out: Path, *, exact: bool = False,
        manifest: Manifest | None = None) -> Clip:
    """Write the clip to `out` (and `out` with `.vtt` beside it). A failure leaves neither."""
    out = out.resolve()
    if out.is_dir() or out.suffix.lower() != ".mp4":
        raise SessionError(f"-o {out}: name an .mp4 file for the clip")
    manifest = manifest or session.current_manifest()
    pieces, gaps = plan(manifest, start, end)
    asked = pieces[0].global_from
    check_joinable(session.root, pieces)
    pieces[0] = snap_to_keyframe(pieces[0], session.root)
    early = asked - pieces[0].global_from
    exact = exact and early > 0.0005  # FROM on a keyframe: the copy is exact already
    head_to = _next_keyframe(session.root, pieces[0], asked - pieces[0].segment.global_start) if exact else None
    subtitle_cues = _clip_cues(session, pieces, _clock(pieces, shift=early if exact else 0.0), gaps)
    vtt = out.with_suffix(".vtt")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".cht-clip-", dir=out.parent) as work:
            _render(session.root, pieces, subtitle_cues, Path(work), out, vtt, exact_from=early if exact else None,
                    head_to=head_to)
    except OSError as exc:
        raise SessionError(f"cannot write {out} ({exc.strerror or exc}): choose another -o") from None
    skipped = early if exact else 0.0
    seconds = sum(p.seconds for p in pieces) - skipped
    return Clip(out, round(pieces[0].global_from + skipped, 3),
                round(pieces[-1].segment.global_start + pieces[-1].local_to, 3), round(early - skipped, 3),
                round(seconds, 3), gaps, len(subtitle_cues), vtt, exact,
                round(head_to - (asked - pieces[0].segment.global_start), 3) if head_to is not None else None)


def _next_keyframe(root: Path, piece: Piece, local: float) -> float | None:
    """The first keyframe after `local` inside the piece, if the video is H.264 (whose
    parameter sets can travel in-band, so a re-encoded head joins the copied rest); else None."""
    path = root / piece.segment.file
    with av.open(str(path)) as container:
        video = next((s for s in container.streams if s.type == "video"), None)
        if video is None or video.codec_context.name != "h264":
            return None
    after = [t for t in keyframe_times(path) if local + 1e-3 < t < piece.local_to - 1e-3]
    return after[0] if after else None


def check_joinable(root: Path, pieces: list[Piece]) -> None:
    """Stream copy joins pieces only if their streams are alike (codec, size, sample rate, the
    decoder's setup): a session continued from another source may differ. SessionError if not."""
    first = None
    for piece in pieces:
        shape = _streams(root / piece.segment.file)
        if first is None:
            first = (piece, shape)
        elif shape != first[1]:
            a, b = first[0].segment, piece.segment
            raise SessionError(
                f"{Path(a.file).name} and {Path(b.file).name} hold different streams ({_describe(first[1])} vs "
                f"{_describe(shape)}): cut two clips, one ending by {b.global_start:.3f} s and one from there")


def _streams(path: Path) -> tuple:
    with av.open(str(path)) as container:
        out = []
        for kind in ("video", "audio"):
            stream = next((s for s in container.streams if s.type == kind), None)
            if stream is not None:
                cc = stream.codec_context
                out.append((kind, cc.name, getattr(cc, "width", 0), getattr(cc, "height", 0),
                            getattr(cc, "sample_rate", 0), bytes(cc.extradata or b"")))
        return tuple(out)


def _describe(shape: tuple) -> str:
    return ", ".join(f"{name} {w}x{h}" if kind == "video" else f"{name} {rate} Hz"
                     for kind, name, w, h, rate, _ in shape)


def _clock(pieces: list[Piece], shift: float = 0.0) -> list[tuple[Piece, float]]:
    """Each piece with where it begins on the clip's own clock (which starts `shift` seconds
    into the first piece: an exact clip drops what lies before FROM)."""
    out, at = [], -shift
    for piece in pieces:
        out.append((piece, at))
        at += piece.seconds
    return out


def _clip_cues(session: Session, pieces: list[Piece], clock: list[tuple[Piece, float]], gaps: list[Gap]) -> list[Cue]:
    """The transcript's cues inside the pieces, moved to the clip's clock, plus one cue per gap."""
    mapped = []
    for cue in cues(with_speakers(session.root, read_spoken(session.root))):
        for piece, at in clock:
            a, b = max(cue.start, piece.global_from), min(cue.end, piece.global_from + piece.seconds)
            a, b = max(at + a - piece.global_from, 0.0), at + b - piece.global_from
            if b - a > 0.05:
                mapped.append(Cue(round(a, 3), round(b, 3), cue.text, cue.speaker))
    for gap in gaps:
        join = next((at for piece, at in clock if piece.global_from >= gap.end - 0.001), None)
        if join is not None:
            mapped.append(Cue(round(join, 3), round(join + GAP_CUE_S, 3),
                              f"[not recorded: {gap.end - gap.start:.1f} s skipped]"))
    return sorted(mapped, key=lambda c: c.start)


def _render(root: Path, pieces: list[Piece], subtitle_cues: list[Cue], work: Path, out: Path, vtt: Path,
            *, exact_from: float | None, head_to: float | None = None) -> None:
    """Stream-copy the pieces into one file (concat demuxer, from the first piece's keyframe).

    exact with `head_to` (the keyframe after FROM): only FROM → that keyframe is re-encoded,
    the rest is copied; both go through MPEG-TS (H.264 parameter sets in-band at every
    keyframe) and are joined, so the copied part keeps its own. exact without: the copied
    file is re-encoded from `exact_from` seconds in (input seeking decodes from the keyframe
    and drops what lies before, which the concat demuxer's inpoint does not)."""
    listing = work / "pieces.txt"
    listing.write_text(_listing(root, pieces))
    (work / "clip.vtt").write_text(to_vtt(subtitle_cues), encoding="utf-8")
    info = probe_file(root / pieces[0].segment.file)
    streams = [*(["-map", "0:v:0"] if info.has_video else []), *(["-map", "0:a:0"] if info.has_audio else [])]
    subs = ["-map", "1:0", "-c:s", "mov_text", "-metadata:s:s:0", "language=und"] if subtitle_cues else []
    vtt_input = ["-i", str(work / "clip.vtt")] if subtitle_cues else []
    copied, tmp = work / "copied.mp4", work / "clip.mp4"
    if exact_from is not None and head_to is not None:
        first = pieces[0]
        start = first.local_from + exact_from
        head, rest, joined = work / "head.ts", work / "rest.ts", work / "joined.txt"
        _ffmpeg(["-ss", f"{start:.6f}", "-i", str(root / first.segment.file), "-t", f"{head_to - start:.6f}",
                 *streams, "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-bf", "0", "-pix_fmt", "yuv420p",
                 "-c:a", "aac", "-f", "mpegts", str(head)])
        listing.write_text(_listing(root, [Piece(first.segment, head_to, first.local_to), *pieces[1:]]))
        _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), *streams, "-c", "copy",
                 "-bsf:v", "h264_mp4toannexb", "-f", "mpegts", str(rest)])
        joined.write_text(f"ffconcat version 1.0\nfile '{_quoted(head)}'\nfile '{_quoted(rest)}'\n")
        _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(joined), *vtt_input, *streams, *subs,
                 "-c:v", "copy", "-c:a", "copy", "-bsf:a", "aac_adtstoasc", "-movflags", "+faststart", str(tmp)])
    elif exact_from is None:
        _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), *vtt_input, *streams, *subs,
                 "-c:v", "copy", "-c:a", "copy", "-movflags", "+faststart", str(tmp)])
    else:
        _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), *streams, "-c", "copy", str(copied)])
        _ffmpeg(["-ss", f"{exact_from:.6f}", "-i", str(copied), *vtt_input, *streams, *subs,
                 "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac",
                 "-movflags", "+faststart", str(tmp)])
    os.replace(work / "clip.vtt", vtt)
    os.replace(tmp, out)


def _listing(root: Path, pieces: list[Piece]) -> str:
    """The concat demuxer's list: each piece's file with its in and out points."""
    return "ffconcat version 1.0\n" + "".join(
        f"file '{_quoted(root / p.segment.file)}'\ninpoint {p.local_from:.6f}\noutpoint {p.local_to:.6f}\n"
        for p in pieces)


def _ffmpeg(args: list[str]) -> None:
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SessionError(f"ffmpeg could not cut the clip ({last}): check the session with `cht rebuild`")


def _quoted(path: Path) -> str:
    """A path inside the concat list's single quotes."""
    return str(path).replace("'", "'\\''")


def default_name(session_id: str, start: float, end: float) -> Path:
    return Path(f"{session_id}-{_stamp(start)}-{_stamp(end)}.mp4")


def _stamp(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s"
