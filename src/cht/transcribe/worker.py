"""One transcription worker: chunks in, final lines out, in order, one at a time.

The analyzer's thread feeds PCM; the chunker closes chunks at pauses; closed chunks wait in
a queue bounded by seconds of audio. When the model cannot keep up, the queue fills and
`feed` blocks: the analyzer falls behind the files on disk (which hold everything), lag
grows and is reported, and no audio is ever dropped. While the queue is empty the worker
spends spare time on a provisional text for the chunk still being spoken.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field

from cht import events as ev
from cht.analyze.reader import PcmChunk
from cht.transcribe.chunker import RATE, Chunk, Chunker, ChunkPolicy
from cht.transcribe.model import SpeechModel, Word
from cht.transcribe.store import TranscriptLine, TranscriptStore, merge

log = logging.getLogger("cht.transcribe")

INDEX_EVERY_S = 2.0  # seconds between rewrites of the derived index while live


@dataclass
class TranscribeOptions:
    policy: ChunkPolicy = field(default_factory=ChunkPolicy)
    provisional_every_s: float | None = 2.0  # None: no provisional hypotheses (offline)
    max_queue_s: float = 600.0  # seconds of closed chunks waiting before feed() blocks
    beam_size: int = 1  # greedy: as good as beam 5 on these chunks (bench), at half the cost
    lag_report_s: float = 0.5  # publish TranscriptLag when it moved this much
    live_index: bool = True  # keep transcript/index.json up to date while running


class Transcriber:
    def __init__(self, model: SpeechModel, store: TranscriptStore, bus: ev.EventBus,
                 options: TranscribeOptions, *, done: list[tuple[float, float]] | None = None,
                 first_chunk: int = 0) -> None:
        self.model = model
        self.store = store
        self.bus = bus
        self.options = options
        self._chunker = Chunker(options.policy, first_id=first_chunk)
        self._done = merge(done or [])  # global spans already in the transcript: not fed again
        self._queue: deque[Chunk] = deque()
        self._queued_s = 0.0
        self._provisional: Chunk | None = None
        self._last_provisional_at = 0.0
        self._cond = threading.Condition()
        self._closing = False  # no more audio will come
        self._abandon = False  # stop now; what is queued stays missing for `cht transcribe`
        self._thread: threading.Thread | None = None
        self._lines = store.read()
        self._final_end = max((line.span[1] for line in self._lines if line.span), default=0.0)
        self._index_at = 0.0
        self._silence: list[float] | None = None  # [chunk id, start, end] of silence not yet written
        self._reported_lag = -1.0
        self._busy = 0
        self.max_concurrent = 0  # how many chunks were ever transcribed at once (must stay 1)
        self.chunks_transcribed = 0
        self.busy_s = 0.0  # seconds spent in the model (the real-time factor's numerator)

    # -- the producer side (the analyzer's thread) --

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="cht-transcribe", daemon=True)
        self._thread.start()

    def feed(self, pcm: PcmChunk) -> None:
        if self._abandon:
            return
        for t, samples in self._uncovered(pcm):
            for chunk in self._chunker.feed(t, samples):
                self._enqueue(chunk)
        self._offer_provisional()
        self._report_lag()

    def flush(self) -> None:
        """Close the chunk being gathered: no more audio is coming for now."""
        for chunk in self._chunker.flush():
            self._enqueue(chunk)

    def stop(self) -> bool:
        """Flush and transcribe everything queued (progress: `TranscriptLag(draining=True)`);
        True when nothing is left missing. `abandon()` from another thread cuts it short."""
        self.flush()
        with self._cond:
            self._closing = True
            self._provisional = None
            self._cond.notify_all()
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)  # short waits: a second Ctrl-C (abandon) is handled meanwhile
        if not self._abandon:
            self._flush_silence()
        self._write_index(force=True)
        return not self._queue

    def abandon(self) -> None:
        with self._cond:
            self._abandon = True
            self._cond.notify_all()

    @property
    def done(self) -> list[tuple[float, float]]:
        """Global spans transcribed before this transcriber started."""
        return self._done

    @property
    def lag_s(self) -> float:
        received = self._chunker.received_end
        return 0.0 if received is None else max(0.0, received - self._final_end)

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
                self._cond.wait(0.5)  # back-pressure: the analyzer waits, the files keep everything
            self._queue.append(chunk)
            self._queued_s += chunk.seconds
            if self._provisional is not None and self._provisional.id == chunk.id:
                self._provisional = None
            self._cond.notify_all()

    def _offer_provisional(self) -> None:
        every = self.options.provisional_every_s
        if every is None or self._queue:
            return
        now = time.monotonic()
        if now - self._last_provisional_at < every:
            return
        running = self._chunker.running()
        if running is None:
            return
        self._last_provisional_at = now
        with self._cond:
            self._provisional = running
            self._cond.notify_all()

    # -- the worker --

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and self._provisional is None and not self._closing and not self._abandon:
                    self._cond.wait()
                if self._abandon or (self._closing and not self._queue):
                    return
                if self._queue:
                    chunk, final = self._queue[0], True
                else:
                    chunk, final, self._provisional = self._provisional, False, None
            try:
                self._process(chunk, final)
            except Exception:  # a model failure must not take the recording down
                log.exception("transcribing chunk %d (%.1f–%.1f s) failed", chunk.id, chunk.start, chunk.end)
                if final:
                    self.bus.publish(ev.Warning(f"transcription failed at {chunk.start:.1f} s: see session.log"))
            if final:
                with self._cond:
                    self._queue.popleft()
                    self._queued_s -= chunk.seconds
                    self._cond.notify_all()
                self._report_lag()

    def _process(self, chunk: Chunk, final: bool) -> None:
        if final and not chunk.speech:
            self._note_silence(chunk)
            return
        words, language = self._transcribe(chunk, final)
        line = self._line(chunk, words, language, final)
        if final:
            self._flush_silence()
            self._commit(line)
        elif line.text:
            self.bus.publish(ev.TranscriptSegments([_event_dict(line)], final=False))

    def _transcribe(self, chunk: Chunk, final: bool) -> tuple[list[Word], str]:
        with self._cond:
            self._busy += 1
            self.max_concurrent = max(self.max_concurrent, self._busy)
        began = time.perf_counter()
        try:
            if final:
                return self.model.transcribe(chunk.audio, beam_size=self.options.beam_size)
            return self.model.transcribe(chunk.audio, draft=True)
        finally:
            with self._cond:
                self._busy -= 1
            self.busy_s += time.perf_counter() - began
            if final:
                self.chunks_transcribed += 1

    def _line(self, chunk: Chunk, words: list[Word], language: str, final: bool) -> TranscriptLine:
        mapped = []
        limit = chunk.seconds
        for w in words:
            start, end = min(w.start, limit), min(max(w.end, w.start), limit)
            start = chunk.onset(start, end)
            mapped.append({"start": round(chunk.to_global(start), 3), "end": round(chunk.to_global(end), 3),
                           "word": w.word, "p": round(w.probability, 3)})
        text = "".join(w["word"] for w in mapped).strip()
        span = [round(chunk.start, 3), round(chunk.end, 3)]
        start = mapped[0]["start"] if mapped else span[0]
        end = mapped[-1]["end"] if mapped else span[1]
        return TranscriptLine(chunk.id, start, end, text, mapped, span, final, language)

    def _note_silence(self, chunk: Chunk) -> None:
        """Silent chunks are recorded too (the audio was listened to), merged into one line
        per stretch of silence (at most a minute)."""
        span = self._silence
        if span is not None and abs(span[2] - chunk.start) < 0.05 and chunk.end - span[1] < 60.0:
            span[2] = chunk.end
        else:
            self._flush_silence()
            self._silence = [chunk.id, chunk.start, chunk.end]
        self._final_end = max(self._final_end, chunk.end)
        if self._closing:
            self._flush_silence()

    def _flush_silence(self) -> None:
        if self._silence is None:
            return
        chunk_id, start, end = self._silence
        self._silence = None
        start, end = round(start, 3), round(end, 3)
        self._commit(TranscriptLine(int(chunk_id), start, end, "", [], [start, end]))

    def _commit(self, line: TranscriptLine) -> None:
        self.store.append(line)
        self._lines.append(line)
        self._final_end = max(self._final_end, line.span[1])
        if line.text:
            self.bus.publish(ev.TranscriptSegments([_event_dict(line)], final=True))
        self._write_index()

    def _write_index(self, force: bool = False) -> None:
        if not self.options.live_index:
            return
        now = time.monotonic()
        if not force and now - self._index_at < INDEX_EVERY_S:
            return
        self._index_at = now
        try:
            received = self._chunker.received_end
            behind = [(self._final_end, received)] if received and received > self._final_end else []
            self.store.write_index(self._lines, pending=behind)
        except OSError as exc:
            log.warning("could not write the transcript index: %s", exc)

    def _report_lag(self, force: bool = False) -> None:
        lag = self.lag_s
        if force or abs(lag - self._reported_lag) >= self.options.lag_report_s:
            self._reported_lag = lag
            self.bus.publish(ev.TranscriptLag(round(lag, 2), round(self._queued_s, 2), self._closing))


def _event_dict(line: TranscriptLine) -> dict:
    return asdict(line)
