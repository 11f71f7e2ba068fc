"""SOURCE parsing and the checks that fail before anything is recorded."""

import socket

import pytest

from cht.errors import SourceError
from cht.lifecycle import source_label
from cht.record.sources import parse_source
from conftest import make_media


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_forms():
    port = free_port()
    assert parse_source("demo").kind == "demo"
    assert parse_source("https://example.com/live.m3u8").kind == "url"
    assert parse_source("rtsp://10.0.0.1/cam").kind == "url"
    assert parse_source(f"rtmp://127.0.0.1:{port}/live/key").kind == "listen"
    assert parse_source(f"tcp://127.0.0.1:{port}").kind == "listen"
    assert parse_source(f"srt://127.0.0.1:{port}").kind == "listen"


def test_file_is_probed(tmp_path):
    src = parse_source(str(make_media(tmp_path / "a.mp4", 1)))
    assert src.kind == "file" and src.media.has_video and src.media.has_audio
    assert src.codec_args == ["-c", "copy"]


def test_pcm_audio_is_encoded_on_the_way_in(tmp_path):
    from cht.record.demo import speech_wav

    src = parse_source(str(speech_wav()))
    assert src.media.has_audio and not src.media.has_video
    assert "aac" in src.codec_args


@pytest.mark.parametrize("spec, message", [
    ("/no/such/file.mp4", "no such file"),
    ("", "SOURCE is empty"),
    ("ftp://host/x", "unsupported URL scheme"),
    ("rtmp://127.0.0.1:1935/live", "stream key"),
    ("tcp://127.0.0.1", "needs a host and a port"),
    ("tcp://no-such-host.invalid:9000", "no such address"),
])
def test_bad_sources(spec, message):
    with pytest.raises(SourceError, match=message):
        parse_source(spec)


def test_not_media(tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_text("this is text, not media\n" * 100)
    with pytest.raises(SourceError, match="not a media file"):
        parse_source(str(junk))


def test_directory(tmp_path):
    with pytest.raises(SourceError, match="is a directory"):
        parse_source(str(tmp_path))


def test_listener_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SourceError, match="port is in use"):
            parse_source(f"tcp://127.0.0.1:{port}")


def test_screen_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(SourceError, match="DISPLAY is not set"):
        parse_source("screen")


def test_secrets_never_reach_the_manifest():
    port = free_port()
    label = source_label(parse_source(f"rtmp://127.0.0.1:{port}/live/s3cret"))
    assert label == f"rtmp://127.0.0.1:{port}/live/***"
    assert source_label(parse_source("https://user:pw@example.com/a.m3u8?token=t")) == "https://example.com/a.m3u8"
