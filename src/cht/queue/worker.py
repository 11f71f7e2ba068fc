"""`cht worker --queue URL`: one model on any machine, decoding chunks any recorder published.

Workers share one durable pull consumer: each chunk goes to one of them, and is acknowledged
only after its result is stored in the result stream. A worker killed mid-chunk never acks it:
JetStream hands it to another after the ack wait (a long decode tells the server it is still
at it, so it is not handed out twice meanwhile). A message that is not a chunk is logged and
terminated (never retried); one whose decode raises gets an error result, so its session
does not wait for it for ever. Steps (streaming-commit decodes) come as requests on a queue
group and are answered directly. One model call at a time, in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cht.memory import release_free_memory
from cht.queue import connect as q
from cht.queue.protocol import Job, Result, parse_job, result_message
from cht.transcribe.model import Decoded, SpeechModel
from cht.transcribe.worker import unsure

log = logging.getLogger("cht.queue")

DEFAULT_ACK_WAIT_S = 60.0


@dataclass
class WorkerStats:
    chunks: int = 0
    steps: int = 0
    audio_s: float = 0.0
    busy_s: float = 0.0
    poison: int = 0
    started: float = 0.0

    def line(self) -> str:
        wall = max(1e-6, time.monotonic() - self.started)
        rtf = self.busy_s / self.audio_s if self.audio_s else 0.0
        return (f"{self.chunks} chunks ({self.chunks / wall:.2f}/s), {self.steps} steps, "
                f"{self.audio_s:.0f} s of audio, RTF {rtf:.2f}, {self.poison} rejected")


def decode(model: SpeechModel, job: Job) -> Decoded:
    """A chunk or a step as the in-process engine decodes it, language check included: a
    session following a detected language gets the window in another one only when the model
    doubts the words and is sure of the other language."""
    decoded = model.transcribe(job.audio, language=job.language, beam_size=job.beam_size, step=job.step,
                               said=job.said, hear=job.may_doubt)
    if job.may_doubt and unsure(decoded):
        decoded = model.in_another_language(job.audio, decoded, beam_size=job.beam_size, step=job.step) or decoded
    release_free_memory()  # the decode's buffers, kept by glibc otherwise (cht.memory)
    return decoded


class Worker:
    def __init__(self, model: SpeechModel, url: str, *, creds: Path | None = None,
                 ack_wait_s: float = DEFAULT_ACK_WAIT_S, report: Callable[[str], None] | None = None,
                 report_every_s: float = 30.0) -> None:
        self.model = model
        self.url = url
        self.creds = creds
        self.ack_wait_s = ack_wait_s
        self.report = report
        self.report_every_s = report_every_s
        self.stats = WorkerStats(started=time.monotonic())
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cht-worker-model")
        self._stopping: asyncio.Event | None = None

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM."""
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        nc = await q.connect(self.url, creds=self.creds, name="cht-worker")
        js = nc.jetstream()
        await q.ensure_streams(js)
        await self._ensure_consumer(js)
        chunks = await js.pull_subscribe_bind(q.WORKERS, stream=q.CHUNK_STREAM)
        steps = await nc.subscribe(q.STEP_SUBJECT, queue=q.WORKERS, cb=self._on_step)
        reporter = loop.create_task(self._report_every())
        log.info("worker ready on %s", q.redact(self.url))
        try:
            while not self._stopping.is_set():
                try:
                    messages = await chunks.fetch(1, timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                except Exception as exc:  # noqa: BLE001 - the server away: wait for the reconnect
                    log.debug("fetching chunks: %s", type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                for message in messages:
                    await self._on_chunk(js, message)
        finally:
            reporter.cancel()
            await steps.unsubscribe()
            await nc.close()  # every ack and result was awaited: nothing is in flight
            self._executor.shutdown(wait=False, cancel_futures=True)
            if self.report:
                self.report(self.stats.line())

    async def _ensure_consumer(self, js) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig
        from nats.js.errors import NotFoundError

        try:
            await js.consumer_info(q.CHUNK_STREAM, q.WORKERS)
        except NotFoundError:
            await js.add_consumer(q.CHUNK_STREAM, ConsumerConfig(
                durable_name=q.WORKERS, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s,
                max_deliver=q.MAX_DELIVER))

    async def _on_chunk(self, js, message) -> None:
        try:
            job = parse_job(message.headers, message.data)
        except ValueError as exc:
            self.stats.poison += 1
            log.warning("rejected a message on %s: %s", q.CHUNK_SUBJECT, exc)
            await message.term()
            return
        if not job.reply.startswith(q.RESULT_SUBJECT + "."):
            self.stats.poison += 1
            log.warning("rejected chunk %s: no result subject", job.key)
            await message.term()
            return
        result = await self._decode(job, message)
        headers, body = result_message(result)
        while True:  # acked only once the result is stored
            try:
                await js.publish(job.reply, body, headers=headers, timeout=5.0)
                break
            except Exception as exc:  # noqa: BLE001 - the server away: try again
                log.debug("publishing result %s: %s; again", job.key, type(exc).__name__)
                await asyncio.sleep(0.5)
        await message.ack()
        self.stats.chunks += 1

    async def _on_step(self, message) -> None:
        try:
            job = parse_job(message.headers, message.data)
        except ValueError as exc:
            log.warning("rejected a step request: %s", exc)
            return
        result = await self._decode(job, None)
        self.stats.steps += 1
        _, body = result_message(result)
        try:
            await message.respond(body)
        except Exception as exc:  # noqa: BLE001 - the asker gave up or the server is away
            log.debug("answering step %s: %s", job.key, type(exc).__name__)

    async def _decode(self, job: Job, message) -> Result:
        """The model call in its thread; meanwhile the server is told the chunk is in hand."""
        loop = asyncio.get_running_loop()
        began = time.perf_counter()
        future = loop.run_in_executor(self._executor, decode, self.model, job)
        while True:
            done, _ = await asyncio.wait({future}, timeout=self.ack_wait_s / 3)
            if done:
                break
            if message is not None:
                await message.in_progress()
        busy = time.perf_counter() - began
        try:
            decoded = future.result()
        except Exception as exc:  # noqa: BLE001 - reported to the session, logged here
            log.exception("decoding %s failed", job.key)
            return Result(job.key, None, busy, f"{type(exc).__name__}: {exc}")
        if not job.step:
            self.stats.audio_s += len(job.audio) / 16_000
            self.stats.busy_s += busy
        return Result(job.key, decoded, busy)

    async def _report_every(self) -> None:
        while True:
            await asyncio.sleep(self.report_every_s)
            if self.report:
                self.report(self.stats.line())
