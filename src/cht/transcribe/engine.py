"""One speech engine per process: one loaded model, one thread, every session's chunks.

Each session's `Transcriber` keeps its own queue of closed chunks; the engine takes work
from all of them. Final chunks go first, gathered round-robin (one from each session that
has one, then a second round, ...) into one batch per language and beam size, so a
talkative room never starves a quiet one and, when the machine is overloaded, every room
lags evenly; nothing is dropped, the queues (bounded in seconds of audio) hold the
producers back instead. CTranslate2 decodes a batch of windows in one call for less than
the sum of its parts (bench/rooms.py). Drafts of the phrases still being spoken are
decoded only while no final chunk waits, oldest request first. A batch holds windows of one
size only (`model.window_s`), so a chunk's words do not depend on its batch-mates; a
session's chunks of that kind are gathered from across its queue, not only from its head
(`Transcriber.peek`), and each line is still written in turn.
Steps (decodes of each session's uncommitted audio, `worker`) are served when no final chunk
waits, the oldest request first, batched with other sessions' steps of the same language and
window size: with many rooms, one call a second serves them all.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cht.memory import release_free_memory
from cht.sessionlog import as_session
from cht.transcribe.model import Decoded, SpeechModel, window_s

if TYPE_CHECKING:
    from cht.transcribe.chunker import Chunk
    from cht.transcribe.worker import Transcriber

log = logging.getLogger("cht.transcribe")

MAX_BATCH = 8  # windows decoded in one call at most
MAX_BATCH_AUDIO_S = 90.0  # ... and seconds of audio in them (a batch is one uninterruptible call)


@dataclass
class _Steps:
    language: str | None
    items: list[tuple["Transcriber", "Chunk"]] = field(default_factory=list)


@dataclass
class _Batch:
    language: str | None
    beam_size: int
    items: list[tuple["Transcriber", "Chunk"]] = field(default_factory=list)

    @property
    def audio_s(self) -> float:
        return sum(chunk.seconds for _, chunk in self.items if chunk.speech)


class SpeechEngine:
    def __init__(self, model: SpeechModel, *, max_batch: int = MAX_BATCH) -> None:
        self.model = model
        self.max_batch = max_batch
        self.cond = threading.Condition()  # guards every registered transcriber's queue too
        self._clients: list[Transcriber] = []
        self._turn = 0  # the client that goes first in the next batch
        self._thread: threading.Thread | None = None
        self._busy = 0
        self.max_concurrent = 0  # model calls ever running at once (must stay 1)

    # -- clients --

    def register(self, client: Transcriber) -> None:
        with self.cond:
            self._clients.append(client)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="cht-speech", daemon=True)
                self._thread.start()
            self.cond.notify_all()

    def unregister(self, client: Transcriber) -> None:
        with self.cond:
            if client in self._clients:
                self._clients.remove(client)
            self.cond.notify_all()

    @property
    def sessions(self) -> int:
        return len(self._clients)

    # -- the worker --

    def _work(self) -> None:
        while True:
            with self.cond:
                job = self._next_job()
                while job is None:
                    self.cond.wait()
                    job = self._next_job()
                self._busy += 1
                self.max_concurrent = max(self.max_concurrent, self._busy)
            try:
                if isinstance(job, _Batch):
                    self._run_batch(job)
                else:
                    self._run_steps(job)
            except Exception:  # one bad window must not stop every room's transcript
                log.exception("the speech engine failed on a job")
            finally:
                with self.cond:
                    self._busy -= 1
                    self.cond.notify_all()
                release_free_memory()  # the decode's buffers, kept by glibc otherwise (cht.memory)

    def _next_job(self) -> _Batch | _Steps | None:
        """The next batch of final chunks, fairly gathered; else the oldest step request and
        the others that can share its call."""
        clients = self._clients[self._turn:] + self._clients[:self._turn]
        batch: _Batch | None = None
        for _ in range(self.max_batch):  # rounds: one more chunk from each session per round
            added = False
            for client in clients:
                chunk = client.peek(lambda c: batch is None or not c.speech or self._fits(batch, client, c))
                if chunk is None:
                    continue
                if batch is None:
                    batch = _Batch(client.language, client.beam_for(chunk))
                if chunk.speech and not self._speech_items(batch):
                    batch.beam_size = client.beam_for(chunk)  # silence is not decoded: its beam is no one's
                client.take(chunk)
                batch.items.append((client, chunk))
                added = True
            if not added:
                break
        if batch is not None:
            first = batch.items[0][0]
            self._turn = (self._clients.index(first) + 1) % len(self._clients)
            return batch
        waiting = sorted((c for c in self._clients if c.draft_requested_at is not None),
                         key=lambda c: c.draft_requested_at)
        steps: _Steps | None = None
        for client in waiting:
            if steps is not None:
                first, draft = steps.items[0][1], client.peek_draft()
                if (steps.language is None or client.language != steps.language or len(steps.items) >= self.max_batch
                        or draft is None or window_s(draft.seconds, True) != window_s(first.seconds, True)):
                    continue
            chunk = client.take_draft()
            if chunk is None:
                continue
            if steps is None:
                steps = _Steps(client.language)
            steps.items.append((client, chunk))
        return steps

    def _run_steps(self, steps: _Steps) -> None:
        """Decodes with word times (agreement needs them), beam `STEP_BEAM_SIZE`, one call for all,
        each after the text its session committed in its audio."""
        began = time.perf_counter()
        decoded: list[Decoded | None] = [None] * len(steps.items)
        try:
            audios = [chunk.audio for _, chunk in steps.items]
            said = [client.said_in(chunk) for client, chunk in steps.items]
            if steps.language is None:  # detected: a window on its own (see `_next_job`)
                decoded = [self.model.transcribe(audios[0], language=None, step=True, said=said[0])]
            else:  # one window or several: `transcribe_batch` decodes a single one on its own
                decoded = list(self.model.transcribe_batch(audios, language=steps.language, step=True, said=said))
            decoded = [self._language_checked(client, chunk, d, 1, True) if d is not None else None
                       for (client, chunk), d in zip(steps.items, decoded)]
        except Exception:
            log.exception("a step of %d window(s) failed", len(steps.items))
        spent = time.perf_counter() - began
        total = sum(chunk.seconds for _, chunk in steps.items) or 1.0
        for (client, chunk), result in zip(steps.items, decoded):
            client.draft_done(chunk, result, spent * chunk.seconds / total)

    def _language_checked(self, client: Transcriber, chunk: Chunk, decoded: Decoded, beam_size: int,
                          step: bool) -> Decoded:
        """A window decoded in the session's pinned language whose words the model doubts is
        checked for another language; one the model is sure of is decoded again in it, and
        the session follows (a speaker who moved from English to French)."""
        if not client.doubts(chunk, decoded):
            return decoded
        other = self.model.in_another_language(chunk.audio, decoded, beam_size=beam_size, step=step)
        if other is None or not client.switch_language(other.language, other.language_p):
            return decoded
        return other

    def _fits(self, batch: _Batch, client: Transcriber, chunk: Chunk) -> bool:
        speech = self._speech_items(batch)
        if not speech:
            return client.language == batch.language
        if batch.language is None:  # the language is being detected: a window on its own
            return False
        first = next(c for _, c in batch.items if c.speech)
        return (client.language == batch.language and client.beam_for(chunk) == batch.beam_size
                and window_s(chunk.seconds) == window_s(first.seconds)
                and speech < self.max_batch and batch.audio_s + chunk.seconds <= MAX_BATCH_AUDIO_S)

    @staticmethod
    def _speech_items(batch: _Batch) -> int:
        return sum(1 for _, chunk in batch.items if chunk.speech)

    def _run_batch(self, batch: _Batch) -> None:
        speech = [(client, chunk) for client, chunk in batch.items if chunk.speech]
        for client, chunk in speech:
            client.settle(chunk)  # the steps' words before the chunk's pause, before its decode
        results: dict[int, Decoded | None] = {}
        began = time.perf_counter()
        if speech:
            try:
                audios = [chunk.audio for _, chunk in speech]
                hear = any(client.may_doubt(chunk) for client, chunk in speech)  # see `Transcriber.doubts`
                if batch.language is None:  # detected: a window on its own (see `_fits`)
                    decoded = [self.model.transcribe(audios[0], language=None, beam_size=batch.beam_size)]
                else:
                    decoded = self.model.transcribe_batch(audios, language=batch.language,
                                                          beam_size=batch.beam_size, hear=hear)
                decoded = [self._language_checked(client, chunk, d, batch.beam_size, False)
                           for (client, chunk), d in zip(speech, decoded)]
                results = {id(chunk): d for (_, chunk), d in zip(speech, decoded)}
            except Exception:
                for session_id in {getattr(client, "session_id", None) for client, _ in speech}:
                    with as_session(session_id):  # into each session.log that reports the failure
                        log.exception("transcribing %d window(s) failed", len(speech))
        spent = time.perf_counter() - began
        total = sum(chunk.seconds for _, chunk in speech) or 1.0
        for client, chunk in batch.items:  # in each session's own order
            share = spent * chunk.seconds / total if chunk.speech else 0.0
            client.complete(chunk, results.get(id(chunk)) if chunk.speech else None, share,
                            failed=chunk.speech and id(chunk) not in results)
