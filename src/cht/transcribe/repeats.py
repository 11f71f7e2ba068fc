"""Whisper's loops: the same phrase or sentence decoded twice (or more) for one stretch of audio.

Whisper's own guard is the gzip compression ratio of the text (> 2.4: a repetition); a
13-word sentence written twice in a 25 s window compresses to about 1.9 and passes it (seen
on `cht transcribe --all` of a lecture). People do repeat words ("no, no, no"), short
phrases and even a sentence after a pause, but not five words or more back to back within
one decode, nor a stretch of eight words twice in one window; so a run of consecutive copies
of an n-gram whose copies add five words or more is a loop, and so is a second copy of eight
words anywhere in the same decode (French decoded as English gave "The committee said that it
would be difficult to do the right option" twice in one 30 s window). The model decodes such a window again (`model.SpeechModel`); what still loops
after that keeps its first copy only.
"""

from __future__ import annotations

import re
from typing import Sequence, TypeVar

MIN_REPEATED_WORDS = 5  # words in the extra copies that make a repetition a loop
MAX_NGRAM = 30  # the longest phrase looked for (a long sentence)
MIN_ECHO_WORDS = 8  # words of a phrase that, said twice apart in one decode, make a loop

T = TypeVar("T")


def key(word: str) -> str:
    """A word as compared: "Country," and "country." are the same word."""
    return re.sub(r"[^\w']", "", word.lower())


def find_loop(words: Sequence[str]) -> tuple[int, int] | None:
    """The first loop in `words` as (start, end) of its extra copies (the first copy stays
    before `start`), or None."""
    keys = [key(w) for w in words]
    n_words = len(keys)
    for i in range(n_words):
        for n in range(1, min(MAX_NGRAM, (n_words - i) // 2) + 1):
            copies = 1
            while keys[i + copies * n: i + (copies + 1) * n] == keys[i:i + n]:
                copies += 1
            if copies > 1 and n * (copies - 1) >= MIN_REPEATED_WORDS:
                return i + n, i + copies * n
    seen: dict[tuple[str, ...], int] = {}
    for i in range(n_words - MIN_ECHO_WORDS + 1):
        gram = tuple(keys[i:i + MIN_ECHO_WORDS])
        first = seen.setdefault(gram, i)
        if first != i and i >= first + MIN_ECHO_WORDS:
            end = i + MIN_ECHO_WORDS  # the echo goes on as long as it copies the first
            while end < n_words and end - i + first < i and keys[end] == keys[end - i + first]:
                end += 1
            return i, end
    return None


def repeats_back_to_back(words: Sequence[str], shortest: int = 2) -> bool:
    """Is a phrase of `shortest` words or more said twice in a row? (In a short window, or at
    a step's tail, that is a loop too short for `find_loop`: "ever tried ever failed" twice.)"""
    keys = [key(w) for w in words]
    return any(keys[i:i + n] == keys[i + n:i + 2 * n]
               for n in range(shortest, len(keys) // 2 + 1) for i in range(len(keys) - 2 * n + 1))


def drop_loops(items: list[T], word=lambda x: x) -> list[T]:
    """`items` with the extra copies of every loop removed (`word` gives an item's text)."""
    out = list(items)
    while (loop := find_loop([word(x) for x in out])) is not None:
        start, end = loop
        del out[start:end]
    return out
