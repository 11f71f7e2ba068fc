"""The one place that knows ffmpeg: where the binary is, how recorder arguments are
built (always as lists, never shell strings) and how media is probed in-process (PyAV)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cht.errors import SourceError

SEGMENT_PATTERN = "seg_%05d.mp4"
#: Fragmented MP4: an empty moov up front, then self-contained moof+mdat fragments, so a
#: killed writer leaves a file that plays up to its last complete fragment.
FMP4_FLAGS = "+frag_keyframe+empty_moov+default_base_moof+use_metadata_tags"


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped in the imageio-ffmpeg wheel (imported here: a speech worker
    machine runs no ffmpeg)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def recorder_args(
    input_args: list[str],
    map_args: list[str],
    codec_args: list[str],
    segments_dir: Path,
    *,
    start_number: int,
    metadata: dict[str, str],
    max_segment_s: float,
    fragment_s: float,
    relay: bool = False,
) -> list[str]:
    """ffmpeg arguments that record one input (stream copy unless `codec_args` say otherwise)
    into numbered fMP4 segments.

    ffmpeg's segment muxer rotates on `max_segment_s` at the next keyframe with no gap;
    each file restarts its timestamps at 0 and carries `metadata` (run number, where the run
    sits on the global clock), so the manifest can be rebuilt from the files. With `relay`,
    the same packets also go to stdout as MPEG-TS, flushed packet by packet, for live viewers.
    Segments are flushed packet by packet too: left to ffmpeg's 32 KiB write buffer, a slide
    lecture's 1 s fragments reached the disk ~6 at a time, so everything that follows the
    files (transcript, scenes, the page) ran 6 s behind, and a kill -9 lost those 6 s.
    """
    meta: list[str] = []
    for key, value in metadata.items():
        meta += ["-metadata", f"{key}={value}"]
    return [
        ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "warning",
        *input_args,
        *map_args,
        *codec_args,
        *meta,
        "-f", "segment",
        "-segment_time", f"{max_segment_s:g}",
        "-segment_format", "mp4",
        "-segment_format_options",
        f"movflags={FMP4_FLAGS}:frag_duration={int(fragment_s * 1_000_000)}:flush_packets=1",
        "-reset_timestamps", "1",
        "-segment_start_number", str(start_number),
        str(segments_dir / SEGMENT_PATTERN),
        *([*map_args, "-c", "copy", "-f", "mpegts", "-flush_packets", "1", "pipe:1"] if relay else []),
    ]


@dataclass(frozen=True)
class MediaInfo:
    has_video: bool
    has_audio: bool
    duration: float  # seconds; 0 when unknown


def probe_file(path: Path) -> MediaInfo:
    """Open a media file in-process; a SourceError says why it cannot be recorded."""
    import av  # FFmpeg's libraries load only when a file is opened: not for every `cht` command

    try:
        with av.open(str(path)) as container:
            has_video = any(s.type == "video" for s in container.streams)
            has_audio = any(s.type == "audio" for s in container.streams)
            duration = (container.duration or 0) / av.time_base
    except av.FFmpegError as exc:
        raise SourceError(
            f"{path} is not a media file ffmpeg can read ({exc.strerror or exc}); "
            "give a video or audio file, a URL, a listener, 'screen' or 'demo'"
        ) from None
    if not (has_video or has_audio):
        raise SourceError(f"{path} has neither video nor audio to record")
    return MediaInfo(has_video, has_audio, duration)


def keyframe_times(path: Path) -> list[float]:
    """Times (s, from the file's start) of the video keyframes; empty for audio-only files.

    Only packets are read, nothing is decoded.
    """
    import av

    with av.open(str(path)) as container:
        video = next((s for s in container.streams if s.type == "video"), None)
        if video is None:
            return []
        start = video.start_time if video.start_time is not None else 0
        times = [
            float((packet.pts - start) * video.time_base)
            for packet in container.demux(video)
            if packet.pts is not None and packet.is_keyframe
        ]
    return sorted(times)
