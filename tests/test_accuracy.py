"""Accuracy against people, not against the model: the truth the other speech tests take from
faster-whisper (`speech.beckett_words`) is what a person hears in beckett.wav, and `cht record`
transcribes jfk.flac and beckett.wav with a word error rate under 10 % against the human text,
also where Whisper ends its text before the end of a window."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import Cht
from speech import (
    HUMAN,
    beckett,
    beckett_path,
    beckett_words,
    engine,
    jfk_path,
    word_error_rate,
)

from cht.media.ffmpeg import ffmpeg_exe

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


def test_a_window_whose_text_ends_early_still_gives_all_its_words():
    """In this 28 s window (jfk, beckett, then jfk again up to "...can do for") decoded in a
    batch, Whisper ended its text after beckett: the last 7 s were lost until the rest of a
    window whose words end early was decoded on its own."""
    from faster_whisper.audio import decode_audio

    jfk = decode_audio(str(jfk_path()))
    beck = beckett().astype(np.float32) / 32768
    window = np.concatenate([jfk, beck, jfk[: 7 * 16_000]])
    first, second = engine().model.transcribe_batch([window, np.concatenate([beck, jfk])], language="en")
    said = [HUMAN["jfk"], HUMAN["beckett"], "and so my fellow americans ask not what your country can do for"]
    assert word_error_rate(" ".join(said), "".join(w.word for w in first.words)) < 0.1
    assert word_error_rate(f"{HUMAN['beckett']} {HUMAN['jfk']}", "".join(w.word for w in second.words)) < 0.1
