"""The streaming commit policy and the repeat guard, from recorded hypotheses (no model).

The hypotheses are what Whisper base gave for growing buffers of jfk.flac (steps a second
apart), and the loops are the two shapes seen: a sentence written twice back to back by
`cht transcribe --all`, and French decoded as English repeating a clause in one window.
"""

from __future__ import annotations

from cht.transcribe.agreement import LocalAgreement
from cht.transcribe.repeats import drop_loops, find_loop
from cht.transcribe.store import Word


def words(text: str, start: float = 0.0, step: float = 0.4) -> list[Word]:
    return [Word(round(start + i * step, 3), round(start + i * step + 0.3, 3), f" {w}", 0.9)
            for i, w in enumerate(text.split())]


def texts(ws: list[Word]) -> str:
    return " ".join(w.word.strip() for w in ws)


def test_words_are_committed_when_two_consecutive_hypotheses_agree():
    agreement = LocalAgreement()
    assert agreement.insert(words("And so my")) == []  # nothing to agree with yet
    assert texts(agreement.insert(words("And so, my fellow"))) == "And so, my"  # punctuation aside
    assert texts(agreement.pending) == "fellow"
    assert texts(agreement.insert(words("And so my fellow Americans"))) == "fellow"
    # The unsure last word changed ("Americans" / "American"): it waits for the next decode.
    assert agreement.insert(words("And so my fellow American ask")) == []
    assert texts(agreement.insert(words("And so my fellow American, ask not"))) == "American, ask"
    assert texts(agreement.finish(words("And so my fellow American, ask not what"))) == "not what"
    assert agreement.pending == []


def test_a_committed_word_is_never_committed_again_after_the_buffer_was_trimmed():
    agreement = LocalAgreement()
    agreement.insert(words("ask not what your country"))
    assert texts(agreement.insert(words("ask not what your country can"))) == "ask not what your country"
    # The buffer now starts at "country" (cut a little early): the decode repeats it, a bit later.
    assert texts(agreement.insert(words("country can do for you", start=1.75))) == "can"
    assert texts(agreement.insert(words("country can do for you ask", start=1.7))) == "do for you"
    # A final decode of the same stretch commits only what is new.
    assert texts(agreement.finish(words("country can do for you ask what", start=1.7))) == "ask what"


def test_a_word_said_twice_by_the_speaker_is_kept():
    agreement = LocalAgreement()
    agreement.insert(words("no no"))
    assert texts(agreement.insert(words("no no no no"))) == "no no"
    assert texts(agreement.finish(words("no no no no"))) == "no no"


def test_a_sentence_written_twice_back_to_back_is_a_loop_and_kept_once():
    sentence = "we choose to go to the moon in this decade and do the other".split()
    looped = sentence + sentence + ["not", "because"]
    assert find_loop(looped) == (len(sentence), 2 * len(sentence))
    assert drop_loops(looped) == sentence + ["not", "because"]


def test_a_clause_repeated_in_one_window_is_a_loop():
    heard = ("The committee said in the early morning that it would be difficult to do the right option. "
             "The committee said that it would be difficult to do the right option.").split()
    start, end = find_loop(heard)
    assert " ".join(heard[start:end]) == "that it would be difficult to do the right option."
    assert " ".join(drop_loops(heard)).count("difficult") == 1


def test_real_speech_that_repeats_itself_is_not_a_loop():
    for text in ("And so my fellow Americans, ask not what your country can do for you, "
                 "ask what you can do for your country.",
                 "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.",
                 "no, no, no, I said no", "we shall fight on the beaches, we shall fight on the landing grounds"):
        assert find_loop(text.split()) is None, text
