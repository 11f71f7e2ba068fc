"""The streaming commit policy: words become final when two consecutive decodes agree.

LocalAgreement-2 (whisper_streaming, Macháček et al. 2023): the uncommitted audio is decoded
again about once a second; the longest prefix on which this hypothesis and the previous one
agree is committed, the rest waits for the next decode. A word Whisper is unsure of (the last
one, cut off mid-syllable; one it will rewrite once the sentence goes on) changes between
decodes and so is held back; a settled one is committed one decode after it first appears.

This module is the policy alone, on global-time words, with no model and no audio: it can be
tested with recorded hypotheses. Committed words are final and never rewritten. A decode of
audio that partly holds committed words (the buffer is trimmed only at some commits, see
`worker`) repeats them; they are recognised by time (before the committed end) and, for the
word straddling that end, by text and time (the committed tail repeated at the head of the
new hypothesis, starting where the committed copy was heard), so no word is committed twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cht.transcribe.store import Word

BEFORE_S = 0.25  # a word starting this long before the committed end was already committed
OVERLAP_S = 0.05  # a word matching the committed tail is that word again if it starts before the tail ends (+ this)
MAX_OVERLAP = 5  # words of the committed tail compared with the head of a new hypothesis
REPEAT_S = 1.0  # ... two or more of them starting within this of the committed end are a repeat


def key(word: str) -> str:
    """A word as agreement compares it: "Country," and "country." are the same word."""
    return re.sub(r"[^\w']", "", word.lower())


@dataclass
class LocalAgreement:
    committed_end: float = float("-inf")  # global end of the last committed word
    _tail: list[Word] = field(default_factory=list)  # the last committed words (for the overlap check)
    _previous: list[Word] = field(default_factory=list)  # the last hypothesis beyond what is committed

    @property
    def pending(self) -> list[Word]:
        """The latest hypothesis beyond what is committed (what the page shows as a draft)."""
        return list(self._previous)

    def insert(self, words: list[Word]) -> list[Word]:
        """A new hypothesis for the uncommitted audio (global times): returns the words it
        commits, those on which it agrees with the previous hypothesis."""
        fresh = self.fresh(words)
        agreed = 0
        while (agreed < len(fresh) and agreed < len(self._previous)
               and key(fresh[agreed].word) == key(self._previous[agreed].word)):
            agreed += 1
        committed, self._previous = fresh[:agreed], fresh[agreed:]
        self._commit(committed)
        return committed

    def finish(self, words: list[Word]) -> list[Word]:
        """The final decode of a stretch that ended (a pause, a cut, the end): everything in
        it beyond what is committed is committed now."""
        committed = self.fresh(words)
        self._previous = []
        self._commit(committed)
        return committed

    def forget(self) -> None:
        """The audio before the next hypothesis is unrelated (an outage): compare nothing with it."""
        self._previous, self._tail = [], []

    def fresh(self, words: list[Word]) -> list[Word]:
        """The words of a hypothesis that are not committed yet."""
        out = [w for w in words if w.start >= self.committed_end - BEFORE_S and key(w.word)]
        for n in range(min(MAX_OVERLAP, len(self._tail), len(out)), 0, -1):
            tail = self._tail[-n:]
            # Two words or more again right after the committed end are those words decoded
            # again (their times moved: seen by 0.5 s on beckett.wav); one word must also be
            # heard where it was, for a speaker's own "no, no" starts later.
            near = out[0].start < (self.committed_end + REPEAT_S if n > 1 else tail[0].end + OVERLAP_S)
            if near and [key(w.word) for w in tail] == [key(w.word) for w in out[:n]]:
                return out[n:]
        return out

    def _commit(self, words: list[Word]) -> None:
        if words:
            self.committed_end = max(self.committed_end, words[-1].end)
            self._tail = (self._tail + words)[-MAX_OVERLAP:]
