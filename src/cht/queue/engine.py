"""The recording side of `--queue URL`: the process's speech engine, with the model elsewhere.

It serves the same `Transcriber`s as the in-process `SpeechEngine`, through the same calls
(peek/take a closed chunk, take a step, complete, draft_done), but instead of decoding it
publishes each closed chunk to the durable chunk stream at once (the recording never waits for
a worker) and hands results back in each session's chunk order, however they arrive. Steps
(streaming-commit decodes) are requests to whichever worker answers; none within a few
seconds: no step this time (nothing is committed from it, the chunk's final decode still is).
A session's final result waits while its step is out, as the in-process engine orders them.

While no worker is up, or the server is away, chunks wait (in the stream, or here until the
server is back): the session's transcript lag grows and is reported, nothing is dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cht.queue import connect as q
from cht.queue.protocol import Job, Result, job_message, parse_result

if TYPE_CHECKING:
    from cht.transcribe.chunker import Chunk
    from cht.transcribe.worker import Transcriber

log = logging.getLogger("cht.queue")

STEP_TIMEOUT_S = 4.0  # a step not answered by then is skipped: the words wait for the next one
RETRY_S = 0.5  # between attempts to publish while the server is away


@dataclass
class _Pending:
    chunk: Chunk
    key: str
    language: str | None  # the session's language when it was sent


class QueueEngine:
    def __init__(self, url: str, *, creds: Path | None = None) -> None:
        self.url = url
        self.cond = threading.Condition()  # guards every registered transcriber's queue too
        self.max_concurrent = 1  # nothing decodes here; the attribute the transcribers report
        self.id = uuid.uuid4().hex[:12]  # this process's result subject
        self._clients: list[Transcriber] = []
        self._pending: dict[int, deque[_Pending]] = {}  # id(client) -> taken chunks, in order
        self._runs: dict[int, str] = {}  # id(client) -> its part of each chunk key (unique per run)
        self._serial = itertools.count()
        self._results: dict[str, Result] = {}
        self._steps: dict[int, tuple[Chunk, Result | None] | None] = {}  # id(client) -> step out / answered
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._outbox: asyncio.Queue | None = None
        threading.Thread(target=self._run_loop, args=(creds,), name="cht-queue-io", daemon=True).start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        threading.Thread(target=self._pump, name="cht-queue", daemon=True).start()

    # -- what transcribers call --

    def register(self, client: Transcriber) -> None:
        with self.cond:
            self._clients.append(client)
            self._pending[id(client)] = deque()
            self._runs[id(client)] = f"{self.id}.{next(self._serial)}"
            self.cond.notify_all()

    def unregister(self, client: Transcriber) -> None:
        with self.cond:
            if client in self._clients:
                self._clients.remove(client)
            for item in self._pending.pop(id(client), ()):
                self._results.pop(item.key, None)
            self._steps.pop(id(client), None)
            self._runs.pop(id(client), None)
            self.cond.notify_all()

    @property
    def sessions(self) -> int:
        return len(self._clients)

    # -- the pump: takes work from the transcribers, gives results back, in order --

    def _pump(self) -> None:
        while True:
            with self.cond:
                sends, steps, deliveries = self._gather()
                while not (sends or steps or deliveries):
                    self.cond.wait(0.5)
                    sends, steps, deliveries = self._gather()
            for job in sends + steps:
                asyncio.run_coroutine_threadsafe(self._send(job), self._loop)
            for client, chunk, result, step in deliveries:
                self._deliver(client, chunk, result, step)

    def _gather(self):
        sends, steps, deliveries = [], [], []
        for client in list(self._clients):
            pending = self._pending[id(client)]
            if client.abandoned:  # a second stop: what is out stays missing, nobody waits for it
                deliveries += [(client, item, Result(item.key, None, 0.0, "abandoned"), False) for item in pending]
                pending.clear()
                continue
            while (chunk := client.peek()) is not None:
                client.take(chunk)
                item = _Pending(chunk, f"{client.store.root.name}:{chunk.id}:{self._runs[id(client)]}",
                                client.language)
                pending.append(item)
                if chunk.speech:
                    sends.append((client, Job(item.key, chunk.audio, client.language, client.beam_for(chunk),
                                              client.may_doubt(chunk), False, f"{q.RESULT_SUBJECT}.{self.id}")))
            step = self._steps.get(id(client), False)
            if step is False and client.peek_draft() is not None:
                chunk = client.take_draft()
                if chunk is not None:
                    self._steps[id(client)] = (chunk, None)
                    steps.append((client, Job(f"step:{self.id}:{chunk.id}", chunk.audio, client.language, 1,
                                              client.may_doubt(chunk), True, "", client.said_in(chunk))))
            elif step and step[1] is not None:  # a step answered: its result first
                del self._steps[id(client)]
                deliveries.append((client, step[0], step[1], True))
                continue
            if id(client) in self._steps:
                continue  # finals wait while a step is out
            while pending and (not pending[0].chunk.speech or pending[0].key in self._results):
                item = pending.popleft()
                deliveries.append((client, item, self._results.pop(item.key, None), False))
        return sends, steps, deliveries

    def _deliver(self, client: Transcriber, item, result: Result | None, step: bool) -> None:
        if step:
            client.draft_done(item, self._followed(client, client.language, result), result.busy_s if result else 0.0)
            return
        decoded = self._followed(client, item.language, result) if result else None
        failed = result is not None and result.decoded is None
        if failed and not client.abandoned:
            log.warning("chunk %s: the worker could not decode it: %s", item.key, result.error)
        client.complete(item.chunk, decoded, result.busy_s if result else 0.0, failed=failed)

    @staticmethod
    def _followed(client: Transcriber, sent: str | None, result: Result | None):
        """The worker heard another language than the one sent, and was sure: the session follows."""
        decoded = result.decoded if result else None
        if decoded is not None and sent is not None and decoded.language != sent:
            client.switch_language(decoded.language, decoded.language_p)
        return decoded

    # -- the network side (its own thread and event loop) --

    def _run_loop(self, creds: Path | None) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._open(creds))
        except Exception as exc:  # noqa: BLE001 - handed to the constructor's caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.create_task(self._publish_chunks())
        self._loop.create_task(self._take_results())
        self._loop.run_forever()

    async def _open(self, creds: Path | None) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self._nc = await q.connect(self.url, creds=creds, name=f"cht-record-{self.id}")
        self._js = self._nc.jetstream()
        await q.ensure_streams(self._js)
        self._results_sub = await self._js.pull_subscribe(
            f"{q.RESULT_SUBJECT}.{self.id}", durable=f"results-{self.id}", stream=q.RESULT_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                  inactive_threshold=q.RESULTS_MAX_AGE_S))
        self._outbox = asyncio.Queue()

    async def _send(self, item) -> None:
        client, job = item
        if job.step:
            result = await self._step(job)
            with self.cond:
                if id(client) in self._steps:
                    self._steps[id(client)] = (self._steps[id(client)][0], result or Result(job.key, None, 0.0, "no answer"))
                self.cond.notify_all()
        else:
            await self._outbox.put(job)

    async def _step(self, job: Job) -> Result | None:
        from nats import errors

        headers, payload = job_message(job)
        try:
            reply = await self._nc.request(q.STEP_SUBJECT, payload, timeout=STEP_TIMEOUT_S, headers=headers)
            return parse_result(reply.data)
        except (errors.Error, asyncio.TimeoutError, ValueError, KeyError) as exc:
            log.debug("step %s: %s", job.key, type(exc).__name__)
            return None

    async def _publish_chunks(self) -> None:
        """One at a time, in order; a publish the server did not acknowledge is repeated
        (the message id makes a repeat of a stored one harmless)."""
        while True:
            job = await self._outbox.get()
            headers, payload = job_message(job)
            while True:
                try:
                    await self._js.publish(q.CHUNK_SUBJECT, payload, headers=headers, timeout=5.0)
                    break
                except Exception as exc:  # noqa: BLE001 - the server away, a timeout: try again
                    log.debug("publishing %s: %s; again", job.key, type(exc).__name__)
                    await asyncio.sleep(RETRY_S)

    async def _take_results(self) -> None:
        while True:
            try:
                messages = await self._results_sub.fetch(16, timeout=1.0)
            except asyncio.TimeoutError:
                continue
            except Exception as exc:  # noqa: BLE001 - the server away: wait for the reconnect
                log.debug("fetching results: %s", type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                continue
            for message in messages:
                try:
                    result = parse_result(message.data)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("a result that is not one was dropped: %s", exc)
                else:
                    with self.cond:
                        if any(p.key == result.key for items in self._pending.values() for p in items):
                            self._results[result.key] = result  # a repeat of one delivered: not pending
                        self.cond.notify_all()
                await message.ack()
