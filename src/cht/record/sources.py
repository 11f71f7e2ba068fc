"""Parse a SOURCE string into what the recorder needs: ffmpeg input arguments, whether the
source ends by itself, whether it waits for a client, and checks that fail early with a
clear message.

SOURCE forms:
  PATH                      a media file, played at its real pace as if live (--fast: at once)
  http(s)://… rtsp://… udp://…   a stream ffmpeg pulls (HLS playlists included)
  rtmp://HOST:PORT/APP/KEY  listen for a pushed RTMP stream (OBS, ffmpeg)
  srt://HOST:PORT           listen for a pushed SRT stream
  tcp://HOST:PORT           listen for a pushed MPEG-TS stream over TCP
  screen                    this X11 display (x11grab) plus the PulseAudio default source
  demo                      a built-in live source: moving test pattern + real speech
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cht.errors import SourceError
from cht.media.ffmpeg import MediaInfo, probe_file

PULL_SCHEMES = {"http", "https", "rtsp", "rtsps", "udp", "rtp", "hls"}
LISTEN_SCHEMES = {"rtmp", "srt", "tcp"}
#: Codecs an MP4 holds and browsers play; anything else is encoded once on the way in.
COPY_VIDEO = {"h264", "hevc", "av1", "vp9"}
COPY_AUDIO = {"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"}
ENCODE_VIDEO = ["-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p"]
ENCODE_AUDIO = ["-c:a", "aac", "-b:a", "128k"]

HELP = __doc__.split("SOURCE forms:\n", 1)[1]


@dataclass(frozen=True)
class Source:
    kind: str  # file | url | listen | screen | demo | push
    spec: str  # what the user typed (a file path is made absolute); push: the ingest endpoint
    media: MediaInfo | None = None  # for files: what the probe found
    codec_args: list[str] = field(default_factory=lambda: ["-c", "copy"])
    container: str = ""  # push: what the ingest hands the recorder on stdin (flv | mpegts)

    @property
    def finite(self) -> bool:
        """True when the source ending cleanly ends the session. A pulled stream that ends
        (EOF, an HLS end list) is over; one that breaks exits with an error and is retried.
        A listener goes back to listening for the next client."""
        return self.kind in ("file", "url")

    @property
    def stdin_fed(self) -> bool:
        return self.kind in ("demo", "push")

    def map_args(self) -> list[str]:
        """Which input streams are recorded: the first video and the first audio, if any."""
        if self.kind == "screen" and _pulse_available():
            return ["-map", "0:v:0", "-map", "1:a:0"]
        return ["-map", "0:v:0?", "-map", "0:a:0?"]

    def input_args(self, *, offset: float = 0.0, paced: bool = True) -> list[str]:
        """ffmpeg input arguments; `offset` seeks a file, `paced` plays it at real speed."""
        if self.kind == "file":
            pace = ["-readrate", "1", "-readrate_initial_burst", "0"] if paced else []  # live: no burst ahead
            return ["-nostdin", *pace, "-ss", f"{offset:.3f}", "-i", self.spec]
        if self.kind == "demo":
            return ["-f", "mpegts", "-analyzeduration", "1000000", "-i", "pipe:0"]
        if self.kind == "push":
            return ["-f", self.container, "-analyzeduration", "1000000", "-i", "pipe:0"]
        if self.kind == "screen":
            args = ["-nostdin", "-f", "x11grab", "-framerate", "30", "-i", os.environ["DISPLAY"]]
            if _pulse_available():
                args += ["-f", "pulse", "-i", "default"]
            return args
        if self.kind == "listen":
            return ["-nostdin", *_listen_args(self.spec)]
        scheme = urlsplit(self.spec).scheme
        timeout = ["-rw_timeout", "15000000"] if scheme in ("http", "https", "hls") else []
        return ["-nostdin", *timeout, "-i", self.spec]


def parse_source(spec: str) -> Source:
    """Turn the user's SOURCE into a Source, checking what can be checked before recording."""
    spec = spec.strip()
    if not spec:
        raise SourceError("SOURCE is empty: give a media file, a URL, a listener, 'screen' or 'demo'")
    if spec == "demo":
        return Source("demo", "demo")
    if spec == "screen":
        return _screen()
    try:
        scheme = urlsplit(spec).scheme.lower()
        urlsplit(spec).port
    except ValueError as exc:
        raise SourceError(f"{spec!r} is not a valid URL ({exc})") from None
    if scheme in LISTEN_SCHEMES:
        _check_listen(spec, scheme)
        return Source("listen", spec)
    if scheme in PULL_SCHEMES:
        return Source("url", spec)
    if "://" in spec:
        raise SourceError(
            f"unsupported URL scheme {scheme!r} in {spec}: use http(s), rtsp, udp, "
            "or rtmp/srt/tcp to listen for a pushed stream"
        )
    return _file(Path(spec).expanduser())


def _file(path: Path) -> Source:
    if not path.exists():
        raise SourceError(f"no such file: {path} (give a media file, a URL, a listener, 'screen' or 'demo')")
    if path.is_dir():
        raise SourceError(f"{path} is a directory: give a media file inside it")
    media = probe_file(path)
    codecs = _codecs(path)
    video = [] if codecs.get("video") in COPY_VIDEO or not media.has_video else ENCODE_VIDEO
    audio = [] if codecs.get("audio") in COPY_AUDIO or not media.has_audio else ENCODE_AUDIO
    return Source("file", str(path.resolve()), media, ["-c", "copy", *video, *audio])


def _codecs(path: Path) -> dict[str, str]:
    import av

    with av.open(str(path)) as container:
        return {s.type: s.codec_context.name for s in reversed(container.streams) if s.type in ("video", "audio")}


def _screen() -> Source:
    if not os.environ.get("DISPLAY"):
        raise SourceError("'screen' needs an X11 display, and DISPLAY is not set: run it inside an X session")
    return Source(
        "screen",
        "screen",
        codec_args=["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
                    "-pix_fmt", "yuv420p", *ENCODE_AUDIO],
    )


def _pulse_available() -> bool:
    """A PulseAudio server to take sound from; without one, the screen is recorded silent."""
    if os.environ.get("PULSE_SERVER"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return bool(runtime) and Path(runtime, "pulse", "native").exists()


def _host_port(spec: str) -> tuple[str, int]:
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port:
        raise SourceError(f"{spec} needs a host and a port, like {parts.scheme}://127.0.0.1:9000")
    return parts.hostname, port


def _check_listen(spec: str, scheme: str) -> None:
    host, port = _host_port(spec)
    if scheme == "rtmp" and len([p for p in urlsplit(spec).path.split("/") if p]) < 2:
        raise SourceError(f"{spec} needs an app and a stream key: rtmp://{host}:{port}/live/KEY")
    kind = socket.SOCK_DGRAM if scheme == "srt" else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror:
        raise SourceError(f"cannot listen on {host}: no such address on this machine") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, kind) as probe:
        try:
            probe.bind(addr)
        except OSError as exc:
            raise SourceError(
                f"cannot listen on {host}:{port} ({exc.strerror}): the port is in use or not allowed; pick another port"
            ) from None


def _listen_args(spec: str) -> list[str]:
    scheme = urlsplit(spec).scheme.lower()
    if scheme == "rtmp":
        return ["-listen", "1", "-i", spec]
    joiner = "&" if "?" in spec else "?"
    if scheme == "srt":
        return ["-i", f"{spec}{joiner}mode=listener"]
    return ["-f", "mpegts", "-i", f"{spec}{joiner}listen=1"]
