"""Accuracy against people, not against the model: the truth the other speech tests take from
faster-whisper (`speech.beckett_words`) is what a person hears in beckett.wav, and `cht record`
transcribes jfk.flac and beckett.wav with a word error rate under 10 % against the human text."""

from __future__ import annotations

import subprocess

import pytest

from cht.media.ffmpeg import ffmpeg_exe
from conftest import Cht
from speech import HUMAN, beckett_path, beckett_words, jfk_path, word_error_rate

pytestmark = pytest.mark.slow


def test_word_error_rate_counts_substitutions_deletions_and_insertions():
    assert word_error_rate("ask not what your country", "Ask not, what your country!") == 0
    assert word_error_rate("ask not what your country", "ask what my country can") == pytest.approx(3 / 5)
    assert word_error_rate("a b", "") == 1.0


def test_the_model_derived_truth_is_what_a_person_hears():
    assert " ".join(w for w, _, _ in beckett_words()) == HUMAN["beckett"]


def test_recorded_speech_is_transcribed_as_people_hear_it(cht: Cht, tmp_path):
    """jfk.flac (11 s) then beckett.wav (10 s) after 2 s of silence, on a still picture."""
    assert jfk_path().exists(), f"{jfk_path()} is one of the project's shared clips"
    src = tmp_path / "talk.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
                    "-f", "lavfi", "-i", "color=c=0x336699:s=320x240:r=5:d=25",
                    "-i", str(jfk_path()), "-i", str(beckett_path()),
                    "-filter_complex", "[1:a]aresample=16000,apad=pad_dur=2[a];[a][2:a]concat=n=2:v=0:a=1,apad[out]",
                    "-map", "0:v", "-map", "[out]", "-t", "25", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(src)], check=True)
    result = cht.run("record", "--fast", "--no-ui", "--language", "en", "--session", "acc", str(src), timeout=300)
    assert result.returncode == 0, result.stderr
    from cht.transcribe.store import read_spoken

    lines = read_spoken(cht.session_dir("acc"))
    jfk = " ".join(line.text for line in lines if line.start < 12.5)
    beckett = " ".join(line.text for line in lines if line.start >= 12.5)
    errors = {"jfk": word_error_rate(HUMAN["jfk"], jfk), "beckett": word_error_rate(HUMAN["beckett"], beckett)}
    print("word error rates:", errors, "heard:", jfk, "|", beckett)
    assert errors["jfk"] <= 0.1 and errors["beckett"] <= 0.1, (errors, jfk, beckett)
