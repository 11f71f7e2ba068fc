"""Words Whisper made up where nobody spoke.

Whisper invents phrases in silence, most often at the end of a window just after the speech
stopped. Two signs give them away: the VAD heard no speech under them, or Whisper's own
timing and probability do not fit a spoken word (its word-anomaly score).
"""

from __future__ import annotations

import itertools
import logging

from cht.transcribe.store import Word

log = logging.getLogger("cht.transcribe")

PHANTOM_RUN = 2  # this many words in a row where the VAD hears no speech were invented by the model
UNSURE_P = 0.15  # Whisper's anomaly score: a word less probable than this scores 1
SHORT_S = 0.133  # ... a shorter one up to 2 (15 a second below this)
LONG_S = 2.0  # ... a longer one 1 a second above this
ANOMALOUS = 1.0  # words scoring this much a word on average were made up ...
DOUBTED_P = 0.5  # ... from one the model doubts (less probable than this) or that scores as much itself


def drop_phantoms(words: list[Word], heard: list[bool]) -> list[Word]:
    """The words without runs of `PHANTOM_RUN` or more that the VAD heard no speech under.
    "i'm going to get the fuck out of here" was written between jfk's "americans" and "ask
    not" (tests/test_screen.py, once in CI); steps heard "Like y'all." in the pause before
    "what your country". A lone unheard word is kept: a real word timed a little before the
    VAD's onset ("Fail." in beckett, at a step's end) looks the same."""
    kept: list[Word] = []
    for spoken, pairs in itertools.groupby(zip(words, heard), key=lambda pair: pair[1]):
        run = [word for word, _ in pairs]
        if spoken or len(run) < PHANTOM_RUN:
            kept += run
        else:
            log.info("dropped words heard in silence at %.2f s:%s", run[0].start, "".join(w.word for w in run))
    return kept


def anomaly(word: Word) -> float:
    """Whisper's own score for a word it may have made up (openai-whisper's
    `word_anomaly_score`, used by its `hallucination_silence_threshold`): unsure, squeezed
    into almost no time, or stretched over seconds."""
    duration = word.end - word.start
    return float(word.p < UNSURE_P) + max(0.0, SHORT_S - duration) * 15 + max(0.0, duration - LONG_S)


def made_up_tail(words: list[Word], voiced: list[bool]) -> int:
    """How many of a closed window's last words Whisper made up after the speech ended.
    They are found among the last words that Whisper's anomaly score doubts at all or that
    the VAD hears no speech at the middle of: the longest run to the end that scores
    `ANOMALOUS` a word on average (Whisper's own test for a made-up segment) from a word the
    model doubts. jfk's "my fellow Americans." as recorded through a null sink
    (tests/test_screen.py), cut at 21 points 12 ms apart, ended 6 times in a tail such as
    " I'm going to cut it." (5 words in 0.2 s, probabilities 0.10-0.56 but " to" 0.96) or
    " I can't."; the CI failed on one. The VAD still hears the speech's last 0.1-0.2 s (it
    lags), where Whisper squeezes these words, so the VAD alone does not find them. A real
    last word the model doubts is kept when it was given its time: "America." at 0.43, over
    0.44 s."""
    scores = []
    for word, heard in zip(reversed(words), reversed(voiced)):
        score = anomaly(word)
        if score == 0 and heard:
            break
        scores.append(score)
    made_up, total = 0, 0.0
    for n, (score, word) in enumerate(zip(scores, reversed(words)), 1):
        total += score
        if (score >= ANOMALOUS or word.p < DOUBTED_P) and total >= ANOMALOUS * n - 0.01:
            made_up = n
    return made_up
