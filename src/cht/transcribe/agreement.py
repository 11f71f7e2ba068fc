"""The streaming commit policy: words become final when two consecutive decodes agree.

LocalAgreement-2 (whisper_streaming, Macháček et al. 2023): the uncommitted audio is decoded
again about once a second; the longest prefix on which this hypothesis and the previous one
agree is committed, the rest waits for the next decode. A word Whisper is unsure of (the last
one, cut off mid-syllable; one it will rewrite once the sentence goes on) changes between
decodes and so is held back; a settled one is committed one decode after it first appears.

Agreement alone stalls where Whisper keeps changing one word: on espeak's fluent paragraphs
"walked"/"worked" or "by evening"/"I didn't even" flipped for four decodes, holding back the
sentence after them (p95 6.2-11 s from word end to committed, bench/transcribe.py). So a word
is also committed once the decode that has it heard `MATURE_S` of audio after it, if the model
is fairly sure of it (`MATURE_P`): by then the words around it have settled. The words below
`MATURE_P` there were the wrong ones ("I" 0.37, "either" 0.08): they wait for agreement. At
0.6, a 138 s espeak lecture (bench/transcribe.py --programmes lecture) came out 16.2 % wrong
live, against 11.7 % when words are committed only at chunk ends; at 0.8, 12.9-13.9 %, for
0.1-0.4 s more p95 latency (0.9: no better). `MATURE_S` was 2 s; at 0.7 s a sure word is
committed by the first decode that heard a little after it, and the median from word end to
committed fell by 0.17-0.32 s on lecture speech at the same WER (bench/virtual_live.py, which
runs the live policy on a simulated clock, so runs compare without the host's noise;
bench/README.md, twentieth pass). At 0.5 s: 0.35 s less, but 1.4 points more WER against
faster-whisper's own reading.

A word heard two ways by two decodes whose next words agree ("the budget for next year" /
"a budget for next year") held the whole clause after it back for another decode: 4.7-4.9 s
from word end to committed, where the rest of that paragraph took 2-3 s (the test with
continuous speech). Such a word is settled by the model itself: the version it was surer of is
committed, with the words after it. (Differences of two words, and words only one decode
heard, settled the same way, came out 2.5 points worse live on the espeak lecture: the surer
side was often the wrong one, "without a shell" for "the outer shell".)

Words heard differently by decode after decode held back every word after them: the
neural-voice lecture's "in terms of thermodynamics" came out "Sermon Mininix", "term of
dynamics", "Sermon Minanix" in turn while the 17 words after it were the same in each decode,
and those were committed 4-9 s after they were said. So where two decodes part for at most
`DISPUTED` words and then agree on `AGREED_AFTER` words heard at the same times, the words they
part on are committed in the last decode's reading (it heard the most after them), and the
agreement goes on past them. On a simulated clock (bench/virtual_live.py, four phases each)
the p95 from word end to committed fell from 5.12 to 3.48 s on that lecture and from 4.19 to
3.89 s on espeak's (bench/README.md, twenty-first pass), for about half a point more WER on the
first and none on the second. After 3 agreed words it fell further but cost espeak's 0.6 points.

A decode that stopped early (Whisper ends a step's text seconds before its audio now and then:
5 steps in 133 of the espeak lecture) does not erase what the decode before it heard after its
end: those words stay pending, for the next decode to agree with, where they used to wait for
two more decodes.

Agreement on little audio after a word is the policy's price: the two steps that commit it
heard the same 1-2 s after it, and where that is too little to read it (espeak's lecture,
speech under noise) they agree on the same wrong word ("sellers" and "buyers" as "ills" at p
0.09-0.35, bench/live_errors.py). Over eight runs each, the live text came out 1.5-1.8 points
more wrong than chunk ends on those, 0.5 on a neural voice (bench/README.md, twenty-second
pass). `hold_s` (`--commit-delay`) commits a word only once a decode heard that much after it:
at 2 s both came out as good as chunk ends, with a median 1.1 s later. Off by default.

This module is the policy alone, on global-time words, with no model and no audio: it can be
tested with recorded hypotheses. Committed words are final and never rewritten. A decode of
audio that partly holds committed words (the buffer is trimmed only at some commits, see
`worker`) repeats them; they are recognised by time (before the committed end) and, for the
word straddling that end, by text and time (the committed tail repeated at the head of the
new hypothesis, starting where the committed copy was heard; or the last committed word alone
moved past the committed end, after the words committed before it), so no word is committed
twice. A word decoded again may be spelled another way ("Fail" committed, "Failed" heard
by the chunk's final decode, beckett.wav through the queue): there, a word that begins the
other is the same word (`alike`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cht.transcribe.repeats import key, repeats_back_to_back
from cht.transcribe.store import Word

BEFORE_S = 0.25  # a word starting this long before the committed end was already committed
OVERLAP_S = 0.05  # a word matching the committed tail is that word again if it starts before the tail ends (+ this)
MAX_OVERLAP = 5  # words of the committed tail compared with the head of a new hypothesis
REPEAT_S = 1.0  # ... two or more of them starting within this of the committed end are a repeat
MATURE_S = 0.7  # a word followed by this much audio in the decode that has it is committed, agreed on or not
MATURE_P = 0.8  # ... and the model's probability for it this high
SETTLED_BY = 2  # a word heard two ways is settled when this many words after it agree
AGREED_AFTER = 4  # words two decodes agree on, at the same times, after words they heard differently ...
DISPUTED = 4  # ... at most this many on either side: those are committed with them (`realigned`)
SAME_TIME_S = 0.3  # ... the same times: starts this close
EARLY_S = 1.0  # a decode whose words end this long before its audio stopped early (see `LocalAgreement.insert`)
SETTLE_S = 0.3  # a pending word the last decode heard this much audio after is committed when the speech pauses
SETTLE_LOOKBACK = 12  # ... unless it and this many committed words before it repeat a phrase back to back
UNHEARD_S = 0.02  # a word shorter than this ...
AT_END_S = 0.1  # ... ending this close to where its decode's audio ended was not heard: it is not agreed on
RECENT = 200  # committed words remembered (where a trim may cut, and a step's prefix: `worker`)


def mature(word: Word, heard_until: float) -> bool:
    """Has the decode heard enough after this word to commit it without a second opinion?"""
    after = heard_until - word.end
    return after >= MATURE_S and word.p >= MATURE_P


def unheard(word: Word, heard_until: float) -> bool:
    """Is this a word the decoder wrote past its audio? Whisper squeezes text it runs on with
    into no time at the audio's end: a step of beckett that ended on "failed" went on "ever
    failed ever failed ever tried ever failed", each at 2.94-2.94 s (its audio's end), a loop of
    four-word copies, under the loop guard's five; two steps agreeing on such a tail committed
    it once (4.9 % WER on real continuous speech, bench/README.md's twelfth pass)."""
    return word.end - word.start < UNHEARD_S and heard_until - word.end < AT_END_S


def realigned(fresh: list[Word], previous: list[Word], a: int, b: int) -> tuple[int, int] | None:
    """Where two hypotheses that part at `fresh[a]` / `previous[b]` agree again: (i, j) such
    that the `AGREED_AFTER` words from `fresh[a + i]` and from `previous[b + j]` are the same
    words heard at the same times, with the fewest words between; None if they do not."""
    for size in range(1, 2 * DISPUTED + 1):
        for i in range(max(0, size - DISPUTED), min(size, DISPUTED) + 1):
            x, y = fresh[a + i:a + i + AGREED_AFTER], previous[b + size - i:b + size - i + AGREED_AFTER]
            if len(x) == len(y) == AGREED_AFTER and keys(x) == keys(y) \
                    and all(abs(u.start - v.start) < SAME_TIME_S for u, v in zip(x, y)):
                return i, size - i
    return None


def keys(words: list[Word]) -> list[str]:
    return [key(w.word) for w in words]


def alike(a: str, b: str) -> bool:
    """The same word decoded again, perhaps with another ending ("fail" / "failed"); short
    words must match exactly ("a" / "an", "no" / "now")."""
    return a == b or min(len(a), len(b)) >= 3 and (a.startswith(b) or b.startswith(a))


def repeated(words: list[Word], committed: list[Word]) -> bool:
    """Are `words` the committed words decoded again, word by word?"""
    return len(words) == len(committed) and all(map(alike, keys(words), keys(committed)))


@dataclass
class LocalAgreement:
    committed_end: float = float("-inf")  # global end of the last committed word
    committed: list[Word] = field(default_factory=list)  # the last `RECENT` committed words
    _previous: list[Word] = field(default_factory=list)  # the last hypothesis beyond what is committed
    _heard_until: float = float("-inf")  # where the audio of the last hypothesis ended
    hold_s: float = 0.0  # a word is committed only once a decode heard this much audio after it (0: at once)

    @property
    def pending(self) -> list[Word]:
        """The latest hypothesis beyond what is committed (what the page shows as a draft)."""
        return list(self._previous)

    def insert(self, words: list[Word], heard_until: float) -> list[Word]:
        """A new hypothesis for the uncommitted audio (global times), decoded from audio that
        ends at global `heard_until`: returns the words it commits, those on which it agrees
        with the previous hypothesis (and the few they part on before agreeing again), then
        those that are `mature`."""
        fresh, previous = self.fresh(words), self._previous
        committed: list[Word] = []
        a = b = 0  # the next word of `fresh`, of `previous`
        while a < len(fresh) and b < len(previous) and not unheard(fresh[a], heard_until):
            if key(fresh[a].word) == key(previous[b].word):
                committed.append(fresh[a])
                a, b = a + 1, b + 1
                continue
            after, after_previous = fresh[a + 1:a + 1 + SETTLED_BY], previous[b + 1:b + 1 + SETTLED_BY]
            if len(after) == SETTLED_BY and keys(after) == keys(after_previous):
                committed.append(max(fresh[a], previous[b], key=lambda w: w.p))
                a, b = a + 1, b + 1
                continue
            if (skip := realigned(fresh, previous, a, b)) is None:
                break
            committed += fresh[a:a + skip[0]]  # the last decode's reading: it heard the most after them
            a, b = a + skip[0], b + skip[1]
        while a < len(fresh) and mature(fresh[a], heard_until):
            committed.append(fresh[a])
            a += 1
        pending = fresh[a:]
        if self.hold_s > 0:  # `--commit-delay`: the words heard too little after wait, pending
            held = next((i for i, w in enumerate(committed) if heard_until - w.end < self.hold_s), len(committed))
            committed, pending = committed[:held], committed[held:] + pending
        said_until = fresh[-1].end if fresh else self.committed_end
        if heard_until - said_until >= EARLY_S:  # stopped early: what the last decode heard after stays pending
            pending += [w for w in previous if w.start >= said_until - 0.05]
        self._previous, self._heard_until = pending, heard_until
        self._commit(committed)
        return committed

    def settle(self, paused_at: float) -> list[Word]:
        """The speech paused at `paused_at` (its chunk closed): the pending words before it that
        the last decode heard `SETTLE_S` of audio after, at `MATURE_P`, are committed now. A
        chunk's final decode commits them too, but may take seconds: beckett's "ever tried,
        ever failed" alone (3.4 s) looped at beam 3 and greedy before the full window heard it
        right, and "failed", pending since the last step, was written 5.1-6.8 s after it was
        said (tests/test_streaming_commit.py, on a slow host). Not from a hypothesis that
        repeats a phrase back to back with what was committed: steps looped on beckett ("ever
        tried ever failed ever tried ever failed ever", copies of four words, under the loop
        guard's five), and its tail was committed so."""
        if repeats_back_to_back([w.word for w in self.committed[-SETTLE_LOOKBACK:] + self._previous]):
            return []
        n = 0
        while (n < len(self._previous) and self._previous[n].end <= paused_at
               and self._heard_until - self._previous[n].end >= SETTLE_S and self._previous[n].p >= MATURE_P):
            n += 1
        committed, self._previous = self._previous[:n], self._previous[n:]
        self._commit(committed)
        return committed

    def finish(self, words: list[Word]) -> list[Word]:
        """The final decode of a stretch that ended (a pause, a cut, the end): everything in
        it beyond what is committed is committed now."""
        committed = self.fresh(words)
        self._previous = []
        self._commit(committed)
        return committed

    def fresh(self, words: list[Word]) -> list[Word]:
        """The words of a hypothesis that are not committed yet. One that ends within the
        committed audio is a committed word heard as another. (tests/chaos/test_app_kill.py
        failed once so: a chunk's final decode, its audio cut by a kill, heard "tried, a
        failed" where two steps had committed "tried, ever", and " a" was written.)"""
        out = self._after_committed(words)
        while out and out[0].end <= self.committed_end:
            out = out[1:]
        return out

    def _after_committed(self, words: list[Word]) -> list[Word]:
        words = [w for w in words if key(w.word)]
        out = [w for w in words if w.start >= self.committed_end - BEFORE_S]
        if out and out[0].start < self.committed_end + REPEAT_S:
            # The last committed word heard again, moved past the committed end on its own:
            # the words before it in this decode are the committed ones before it.
            first = next(i for i, w in enumerate(words) if w is out[0])
            for n in range(min(MAX_OVERLAP, len(self.committed), first + 1), 1, -1):
                if repeated(words[first - n + 1:first + 1], self.committed[-n:]):
                    return out[1:]
        for n in range(min(MAX_OVERLAP, len(self.committed), len(out)), 0, -1):
            tail = self.committed[-n:]
            # Two words or more again right after the committed end are those words decoded
            # again (their times moved: seen by 0.5 s on beckett.wav); one word must also be
            # heard where it was, for a speaker's own "no, no" starts later.
            near = out[0].start < (self.committed_end + REPEAT_S if n > 1 else tail[0].end + OVERLAP_S)
            if near and repeated(out[:n], tail):
                return out[n:]
        return out

    def _commit(self, words: list[Word]) -> None:
        if words:
            self.committed_end = max(self.committed_end, words[-1].end)
            self.committed = (self.committed + words)[-RECENT:]
