"""One session's transcription: PCM in, committed words out, in order, never rewritten.

The follower's thread feeds PCM; the chunker closes chunks at pauses; closed chunks wait in
a queue bounded by seconds of audio until the process's one `SpeechEngine` takes them (with
other sessions' chunks, fairly). When the engine cannot keep up, the queue fills and `feed`
blocks: this session's follower falls behind the files on disk (which hold everything), lag
grows and is reported, and no audio is ever dropped.

Continuous speech hardly pauses, so waiting for the chunk's end would commit a lecture's words
10 s late. While its queue is empty the session asks the engine for a *step* about once a
second: a decode of the audio not committed yet. `agreement.LocalAgreement` commits the words
on which two consecutive steps agree (or that a step heard 0.7 s of audio after, if sure), and they are
written at once as a line of their own (a line may end mid-sentence); the rest is published
as the page's draft. The buffer is trimmed after a committed sentence end, or when it grows
long, so steps stay short, `CONTEXT_S` before the end of the committed words: the words kept
are the next step's prefix (`said_in`), so Whisper hears the next words after what was
written. A pause still closes the chunk, whose final decode commits everything left in it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cht import events as ev
from cht.analyze.reader import PcmChunk
from cht.session import rewrite_every
from cht.sessionlog import SESSION, in_own_session
from cht.transcribe.agreement import LocalAgreement
from cht.transcribe.chunker import RATE, Chunk, Chunker, ChunkPolicy
from cht.transcribe.engine import SpeechEngine
from cht.transcribe.model import PIN_LANGUAGE_P, Decoded, Said
from cht.transcribe.phantoms import drop_phantoms, made_up_tail
from cht.transcribe.store import TranscriptIndex, TranscriptLine, TranscriptStore, Word, merge

log = logging.getLogger("cht.transcribe")

INDEX_EVERY_S = 2.0  # seconds between rewrites of the derived index while live (longer once it is big)
PIN_MIN_S = 2.0  # ... when detected on a chunk at least this long
DOUBT_P = 0.7  # a window whose words average a lower probability has its language checked again
KEEP_S = 8.0  # seconds of buffer past which a commit trims it even mid-sentence (windows stay at 10 s)
CONTEXT_S = 2.5  # committed speech a trim keeps before the next words (1.5 s: more errors; 3 s: p95 6.5 s)
STEP_JITTER_S = 0.1  # a step is due after this much less new audio than `step_s` (fragments are not all 0.5 s)
STEP_MIN_GAP = 0.5  # ... and this part of `step_s` after the last (a backlog's audio comes faster)
SHORT_CHUNK_S = 6.0  # a closed chunk shorter than this is decoded greedy (`beam_for`)
BATCH_AHEAD = 16  # queued chunks the engine looks across for batch-mates of one kind (`peek`)


@dataclass
class TranscribeOptions:
    policy: ChunkPolicy = field(default_factory=ChunkPolicy)
    step_s: float | None = 1.0  # seconds between decodes of the uncommitted audio; None: commit at chunk ends only (offline)
    max_queue_s: float = 600.0  # seconds of closed chunks waiting before feed() blocks
    beam_size: int = 3  # finals of 6 s or more (`beam_for`): greedy heard "usually fall" as "you will leave for us"
    lag_report_s: float = 0.5  # publish TranscriptLag when it moved this much
    live_index: bool = True  # keep transcript/index.json up to date while running
    language: str | None = None  # spoken language code; None: detected, then pinned
    commit_delay_s: float = 0.0  # a step commits a word only once it heard this much after it (`LocalAgreement.hold_s`)


def unsure(decoded: Decoded) -> bool:
    """Is this window perhaps in another language than it was decoded in? Words the model
    doubts (French decoded as English averaged 0.58 greedy, English 0.86), or Whisper sure it
    hears another language (`Decoded.heard`: at beam 3, French decoded as English averaged 0.75)."""
    words, heard = decoded.words, decoded.heard
    return bool(words) and (sum(w.probability for w in words) / len(words) < DOUBT_P
                            or heard is not None and heard[0] != decoded.language and heard[1] >= PIN_LANGUAGE_P)


class Transcriber:
    def __init__(self, engine: SpeechEngine, store: TranscriptStore, bus: ev.EventBus,
                 options: TranscribeOptions, *, done: list[tuple[float, float]] | None = None,
                 first_chunk: int = 0) -> None:
        self.engine = engine
        self.store = store
        self.bus = bus
        self.session_id = SESSION.get()  # whose lines the engine's callbacks log (`in_own_session`)
        self.options = options
        self.language = options.language  # pinned once detected with confidence
        self.beam_size = options.beam_size
        self._chunker = Chunker(options.policy, first_id=first_chunk)
        self._done = merge(done or [])  # global spans already in the transcript: not fed again
        self._cond = engine.cond  # one lock for the engine and every queue it serves
        self._queue: deque[Chunk] = deque()
        self._taken = 0  # queued chunks the engine is working on
        self._out: set[int] = set()  # ids of the queued chunks taken (with the engine, or back early)
        self._back: dict[int, tuple[Decoded | None, float, bool]] = {}  # back before a chunk ahead of them
        self._queued_s = 0.0
        self._draft: Chunk | None = None  # the uncommitted audio, waiting for a step
        self.draft_requested_at: float | None = None  # monotonic s; the engine serves the oldest first
        self._last_draft_at = 0.0
        self._stepping = False  # a step is with the engine: the next waits for its result
        self._agreement = LocalAgreement(hold_s=options.commit_delay_s)
        self._piece_end: float | None = None  # global end of the last committed piece (the next span starts there)
        self._drop_to: float | None = None  # the buffer's audio before this is committed: trim it (follower's thread)
        self.steps = 0
        self.step_busy_s = 0.0  # of busy_s, seconds spent in steps
        self._closing = False  # no more audio will come
        self._abandon = False  # stop now; what is queued stays missing for `cht transcribe`
        lines = store.read()
        self._index = TranscriptIndex(lines)  # not the lines themselves: a day of them is 54 MiB
        self._line_id = first_chunk  # the `chunk` number of the next line written (a draft shows it too)
        self._final_end = max((line.span[1] for line in lines if line.span), default=0.0)
        self._index_at = 0.0
        self._index_size = 0  # characters in the index last written
        self._silence: list[float] | None = None  # [chunk id, start, end] of silence not yet written
        self._reported_lag = -1.0
        self.busy_s = 0.0  # seconds of model time spent on this session (the real-time factor's numerator)

    # -- the producer side (the follower's thread) --

    def start(self) -> None:
        self.engine.register(self)

    def feed(self, pcm: PcmChunk) -> None:
        if self._abandon:
            return
        if (drop := self._drop_to) is not None:
            self._drop_to = None
            self._chunker.drop_before(drop)
        for t, samples in self._uncovered(pcm):
            for chunk in self._chunker.feed(t, samples):
                self._enqueue(chunk)
        self._offer_draft()
        self._report_lag()

    def flush(self) -> None:
        """Close the chunk being gathered: no more audio is coming for now."""
        for chunk in self._chunker.flush():
            self._enqueue(chunk)

    def stop(self) -> bool:
        """Flush and wait until the engine has transcribed everything queued (progress:
        `TranscriptLag(draining=True)`); True when nothing is left missing. `abandon()` from
        another thread cuts it short."""
        self.flush()
        with self._cond:
            self._closing = True
            self._draft, self.draft_requested_at = None, None
            self._cond.notify_all()
        self._report_lag(force=True)
        while True:
            with self._cond:
                if not self._stepping and (self._abandon and not self._taken or not self._queue):
                    break
                self._cond.wait(0.5)  # short waits: a second Ctrl-C (abandon) is handled meanwhile
        self.engine.unregister(self)
        if not self._abandon:
            self._flush_silence()
        self._write_index(force=True)
        return not self._queue

    def abandon(self) -> None:
        with self._cond:
            self._abandon = True
            self._cond.notify_all()

    @property
    def abandoned(self) -> bool:
        return self._abandon

    @property
    def done(self) -> list[tuple[float, float]]:
        """Global spans transcribed before this transcriber started."""
        return self._done

    @property
    def lag_s(self) -> float:
        received = self._chunker.received_end
        return 0.0 if received is None else max(0.0, received - self._final_end)

    @property
    def max_concurrent(self) -> int:
        return self.engine.max_concurrent

    def _uncovered(self, pcm: PcmChunk):
        """The parts of `pcm` not transcribed before (an appended or resumed session)."""
        if not self._done:
            yield pcm.t, pcm.samples
            return
        start, n = pcm.t, len(pcm.samples)
        end = start + n / RATE
        cursor = start
        for a, b in self._done:
            if b <= cursor or a >= end:
                continue
            if a > cursor:
                yield cursor, pcm.samples[round((cursor - start) * RATE): round((a - start) * RATE)]
            cursor = max(cursor, b)
        if cursor < end:
            yield cursor, pcm.samples[round((cursor - start) * RATE):]

    def _enqueue(self, chunk: Chunk) -> None:
        with self._cond:
            while self._queued_s >= self.options.max_queue_s and not self._abandon:
                self._report_lag(force=True)
                self._cond.wait(0.5)  # back-pressure: the follower waits, the files keep everything
            self._queue.append(chunk)
            self._queued_s += chunk.seconds
            if self._draft is not None and self._draft.id == chunk.id:
                self._draft, self.draft_requested_at = None, None
            self._cond.notify_all()

    def _offer_draft(self) -> None:
        """Ask for a step when the last is done and a second of new audio came. Counted in
        audio, not wall time: with a wall clock, the follower's poll jitter made two steps in
        five wait for a third 0.5 s fragment (1.3-1.5 s apart; one room through `cht ingest`,
        committed median from outside 2.92 s in one run, 2.53-2.76 s in five counted in audio)."""
        every = self.options.step_s
        if every is None or self._queue or self._stepping:
            return
        now = time.monotonic()
        if now - self._last_draft_at < every * STEP_MIN_GAP:
            return
        running = self._chunker.running()
        if running is None or running.end < self._stepped_end + every - STEP_JITTER_S:
            return
        self._last_draft_at, self._stepped_end = now, running.end
        with self._cond:
            self._draft, self.draft_requested_at = running, now
            self._cond.notify_all()

    _stepped_end = float("-inf")  # global end of the audio the last step was asked for

    # -- what the engine calls (under its lock: peek, take, take_draft) --

    def beam_for(self, chunk: Chunk) -> int:
        """The beam a closed chunk is decoded with. A short chunk (a phrase between pauses,
        alone in a window of mostly silence) is decoded greedy: at beam 3 jfk's "And so my
        fellow Americans," (2.9-5 s) ran on "and so my fellow Americans, and so ..." in 6-15 s
        windows, where greedy did not, and each such loop was decoded again. Live, the words
        after a short phrase waited for those decodes: greedy short finals took the real clips'
        committed p95 from 3.85-4.30 s to 2.73-2.98 s, WER unchanged (bench/README.md,
        fourteenth pass)."""
        return 1 if chunk.seconds < SHORT_CHUNK_S else self.beam_size

    def peek(self, fits: Callable[[Chunk], bool] | None = None) -> Chunk | None:
        """The first queued chunk not yet taken; with `fits`, the first of the next
        `BATCH_AHEAD` that fits the batch being gathered. A backlog of long and short phrases in
        turn reached the engine in turn, beam 3 and greedy, one window a call; gathered by kind
        across the queue, the real clips' catch-up took 0.55-0.7 of the time (bench/README.md,
        nineteenth pass). Lines are still written in turn (`complete`)."""
        if self._abandon:
            return None
        for n, chunk in enumerate(self._queue):
            if fits is not None and n >= BATCH_AHEAD:
                return None
            if id(chunk) not in self._out and (fits is None or fits(chunk)):
                return chunk
        return None

    def take(self, chunk: Chunk) -> None:
        self._out.add(id(chunk))
        self._taken += 1

    def peek_draft(self) -> Chunk | None:
        """The uncommitted audio waiting for a step, if any."""
        return self._draft

    def take_draft(self) -> Chunk | None:
        chunk, self._draft, self.draft_requested_at = self._draft, None, None
        self._stepping = chunk is not None
        return chunk

    @in_own_session
    def complete(self, chunk: Chunk, decoded: Decoded | None, busy_s: float, failed: bool = False) -> None:
        """The engine is done with a chunk: its line is written once every chunk queued before
        it is (a batch may bring a later chunk back first, `peek`)."""
        try:
            with self._cond:
                self._back[id(chunk)] = (decoded, busy_s, failed)
            while True:
                with self._cond:
                    head = self._queue[0] if self._queue else None
                    if head is None or id(head) not in self._back:
                        break
                    result = self._back.pop(id(head))
                self._write_final(head, *result)
        finally:
            with self._cond:
                self._taken -= 1
                self._cond.notify_all()
        self._report_lag()

    def _write_final(self, chunk: Chunk, decoded: Decoded | None, busy_s: float, failed: bool) -> None:
        """The line of the chunk at the head of the queue, from its final decode."""
        try:
            if failed:
                if not self._abandon:  # abandoned: it stays missing for `cht transcribe`, as asked
                    self.bus.publish(ev.Warning(f"transcription failed at {chunk.start:.1f} s: see session.log"))
            elif decoded is None:
                self._note_silence(chunk)
            else:
                self.busy_s += busy_s
                self._pin(decoded, chunk)
                self._flush_silence()
                words = self._agreement.finish(self._words(chunk, decoded, final=True))
                self._commit(self._piece(chunk, words, chunk.end, decoded.language))
                self._piece_end = None
        except Exception as exc:  # a full disk, say: logged; the queue must move on
            log.error("writing chunk %d (%.1f–%.1f s) failed: %s", chunk.id, chunk.start, chunk.end, exc,
                      exc_info=not isinstance(exc, OSError))
        finally:
            with self._cond:
                self._queue.popleft()
                self._out.discard(id(chunk))
                self._queued_s -= chunk.seconds
                self._cond.notify_all()

    @in_own_session
    def draft_done(self, chunk: Chunk, decoded: Decoded | None, busy_s: float = 0.0) -> None:
        """A step's result: commit what agrees with the previous step, show the rest."""
        try:
            if decoded is None or self._abandon:
                return
            self.busy_s += busy_s
            self.step_busy_s += busy_s
            self.steps += 1
            words = self._words(chunk, decoded)
            if self._unsure_language(chunk, decoded):  # shown, not agreed on: the chunk's final decides
                if words:
                    self.bus.publish(ev.TranscriptSegments([self._piece(chunk, words, chunk.end, decoded.language,
                                                                        final=False)], final=False))
                return
            committed = self._agreement.insert(words, chunk.end)
            if committed:
                self._flush_silence()
                self._commit(self._piece(chunk, committed, committed[-1].end, decoded.language))
                self._piece_end = committed[-1].end
                self._trim(chunk, committed)
            pending = self._agreement.pending
            if pending:
                draft = self._piece(chunk, pending, chunk.end, decoded.language, final=False)
                self.bus.publish(ev.TranscriptSegments([draft], final=False))
        except Exception as exc:  # a full disk, say: logged; the other rooms in this step get theirs
            log.error("writing a step of chunk %d (%.1f–%.1f s) failed: %s", chunk.id, chunk.start, chunk.end, exc,
                      exc_info=not isinstance(exc, OSError))
        finally:
            with self._cond:
                self._stepping = False
                self._cond.notify_all()

    @in_own_session
    def settle(self, chunk: Chunk) -> None:
        """The engine is about to decode this closed chunk: what the steps heard before its
        pause is committed first (`LocalAgreement.settle`). Not for a chunk decoded before its
        turn: the final of the one ahead of it commits them."""
        if (self._abandon or self.language is None or not chunk.ends_in_pause
                or not self._queue or self._queue[0] is not chunk):
            return
        try:
            words = self._agreement.settle(chunk.end)
            if words:
                self._flush_silence()
                self._commit(self._piece(chunk, words, words[-1].end, self.language))
                self._piece_end = words[-1].end
        except Exception as exc:  # a full disk, say: the chunk's final decode commits them
            log.error("writing words heard before a pause at %.1f s failed: %s", chunk.end, exc,
                      exc_info=not isinstance(exc, OSError))

    def said_in(self, chunk: Chunk) -> Said:
        """The committed words at the start of a step's audio (a trim keeps some as context):
        the decoder's prefix (`SpeechModel._steps`)."""
        words = [w for w in self._agreement.committed if (w.start + w.end) / 2 >= chunk.start]
        if not words or words[-1].end > chunk.end:
            return Said()
        return Said("".join(w.word for w in words), chunk.to_local(words[-1].end))

    def _trim(self, chunk: Chunk, committed: list[Word]) -> None:
        """After a committed sentence end, or once the buffer is long, the next steps start
        `CONTEXT_S` before the end of the committed words (`_cut_in_context`). Cut in the
        pause right after a sentence end, the next sentence was heard with nothing before it,
        and two steps agreed on sound-alikes ("without a shell" for "the outer shell", "to
        play to" for "two plates"): with the committed words kept as the steps' prefix, the
        espeak lecture came out 13.2-13.9 % wrong against 15.4-16.4 % (bench/README.md, tenth pass)."""
        if committed[-1].word.rstrip()[-1:] in ".?!" or chunk.seconds > KEEP_S:
            if (cut := self._cut_in_context(chunk)) is not None:  # never in a word: its halves would be heard as words
                self._drop_to = cut

    def _cut_in_context(self, chunk: Chunk) -> float | None:
        """Cut at the softest point between two committed words `CONTEXT_S` or more before
        their end (no VAD pause needed: espeak's commas have none). With 1.5 s kept, the phrase
        after the cut came out wrong ("several of them" as "central m"). Without these cuts
        steps grew to 13 s, 1.4 s of model time each, and words were committed 6-7 s late."""
        end = self._agreement.committed_end
        words = [w for w in self._agreement.committed if w.start > chunk.start]
        for before, after in reversed(list(zip(words, words[1:]))):
            if after.start <= end - CONTEXT_S:
                return chunk.softest(before.end - 0.05, after.start + 0.05)
        return None

    def may_doubt(self, chunk: Chunk) -> bool:
        """May this window's language be checked when its words are unsure? Only in a session
        following a language it detected, on a window long enough to detect one."""
        return self.options.language is None and self.language is not None and chunk.seconds >= PIN_MIN_S

    def doubts(self, chunk: Chunk, decoded: Decoded) -> bool:
        """Is this window perhaps in another language than the pinned one?"""
        return self.may_doubt(chunk) and unsure(decoded)

    def _unsure_language(self, chunk: Chunk, decoded: Decoded) -> bool:
        """Commit nothing from a step whose words the model doubts, in a session that detected
        its language, nor, after one long enough for `doubts` to check its language, from the
        rest of that buffer: the chunk's final decode checks the whole phrase. French heard as
        English became "1, 2, 3, 4" in two doubted steps in a row; the next steps, sure of
        their words, wrote French text under the English language token."""
        if self.options.language is not None:
            return False
        if unsure(decoded) and chunk.seconds >= PIN_MIN_S:
            self._doubted = chunk.id
        return unsure(decoded) or chunk.id == self._doubted

    _doubted = -1  # the buffer (chunk id) whose language a step doubted

    @in_own_session
    def switch_language(self, language: str, p: float) -> bool:
        """The engine heard `language` (probability `p`) in a doubted window: follow it if sure."""
        if p < PIN_LANGUAGE_P:
            return False
        log.info("spoken language: %s now (p=%.2f, was %s)", language, p, self.language)
        self.language = language
        self.language_switches += 1
        return True

    language_switches = 0

    def _pin(self, decoded: Decoded, chunk: Chunk) -> None:
        if self.language is None and decoded.language_p >= PIN_LANGUAGE_P and chunk.seconds >= PIN_MIN_S:
            self.language = decoded.language  # detected confidently once: short chunks never flip it
            log.info("spoken language: %s (p=%.2f)", decoded.language, decoded.language_p)

    # -- the lines --

    @staticmethod
    def _words(chunk: Chunk, decoded: Decoded, final: bool = False) -> list[Word]:
        """The decoded words on the global clock, starts moved to the VAD's onsets, without
        phrases invented in silence (`drop_phantoms`) nor, in a chunk's final decode when
        it ends in a pause, after the speech (`made_up_tail`). Not in a step, nor in a
        chunk cut mid-speech (a stop): its last word, cut short, looks made up and is not."""
        mapped, spans = [], []
        limit = chunk.seconds
        for w in decoded.words:
            start, end = min(w.start, limit), min(max(w.end, w.start), limit)
            start = chunk.onset(start, end)
            mapped.append(Word(round(chunk.to_global(start), 3), round(chunk.to_global(end), 3), w.word,
                               round(w.probability, 3)))
            spans.append((start, end))
        heard = [chunk.heard(start, end) for start, end in spans]
        if final and chunk.ends_in_pause and (made_up := made_up_tail(
                mapped, [chunk.heard((a + b) / 2, (a + b) / 2) for a, b in spans])):
            log.info("dropped words made up after the speech at %.2f s:%s", mapped[-made_up].start,
                     "".join(w.word for w in mapped[-made_up:]))
            del mapped[-made_up:], heard[-made_up:]
        return drop_phantoms(mapped, heard)

    def _span_start(self, chunk: Chunk) -> float:
        """Where the next line's audio span starts: after the last committed piece when it
        lies in (or just before) this chunk, so spans never overlap and never leave a hole."""
        piece = self._piece_end
        if piece is not None and chunk.start - 2.0 <= piece < chunk.end:
            return piece
        return chunk.start

    def _piece(self, chunk: Chunk, words: list[Word], span_end: float, language: str,
               final: bool = True) -> TranscriptLine:
        text = "".join(w.word for w in words).strip()
        span = [round(self._span_start(chunk), 3), round(max(span_end, self._span_start(chunk)), 3)]
        start = words[0].start if words else span[0]
        end = words[-1].end if words else span[1]
        return TranscriptLine(self._line_id, start, end, text, words, span, final, language)

    def _note_silence(self, chunk: Chunk) -> None:
        """Silent chunks are recorded too (the audio was listened to), merged into one line
        per stretch of silence (at most a minute)."""
        span = self._silence
        if span is not None and abs(span[2] - chunk.start) < 0.05 and chunk.end - span[1] < 60.0:
            span[2] = chunk.end
        else:
            self._flush_silence()
            # The VAD can miss fluent speech Whisper hears: a step may have committed words in
            # this "silent" chunk's audio. Its line starts after them (or is not written).
            start = max(self._span_start(chunk), min(self._final_end, chunk.end))
            self._silence = [0, start, chunk.end] if start < chunk.end else None
            self._piece_end = None
        self._final_end = max(self._final_end, chunk.end)
        if self._closing:
            self._flush_silence()

    def _flush_silence(self) -> None:
        if self._silence is None:
            return
        _, start, end = self._silence
        self._silence = None
        start, end = round(start, 3), round(end, 3)
        self._commit(TranscriptLine(self._line_id, start, end, "", [], [start, end]))

    def _commit(self, line: TranscriptLine) -> None:
        self.store.append(line)
        self._line_id += 1
        self._index.add(line)
        self._final_end = max(self._final_end, line.span[1])
        if line.text:
            self.bus.publish(ev.TranscriptSegments([line], final=True))
        self._write_index()

    def _write_index(self, force: bool = False) -> None:
        if not self.options.live_index:
            return
        now = time.monotonic()
        if not force and now - self._index_at < rewrite_every(self._index_size, INDEX_EVERY_S):
            return
        self._index_at = now
        try:
            received = self._chunker.received_end
            behind = [(self._final_end, received)] if received and received > self._final_end else []
            self._index_size = self._index.write(self.store.root, pending=behind)
        except OSError as exc:
            log.warning("could not write the transcript index: %s", exc)

    def _report_lag(self, force: bool = False) -> None:
        lag = self.lag_s
        if force or abs(lag - self._reported_lag) >= self.options.lag_report_s:
            self._reported_lag = lag
            self.bus.publish(ev.TranscriptLag(round(lag, 2), round(self._queued_s, 2), self._closing))

