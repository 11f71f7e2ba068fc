"""What travels: a chunk (16 kHz int16 PCM, its decoding options in headers) and its words.

A chunk's key is `session:chunk:run` (run: the recording process and its transcriber, so a
later run's chunk 0 is not taken for this one's); it is JetStream's `Nats-Msg-Id` (a publish
repeated after a lost acknowledgement is stored once) and names the result, so a result that
comes twice (a worker killed after publishing, before acking) is used once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import numpy as np

from cht.transcribe.model import Decoded, Said, Word

RATE = 16_000
MAX_SECONDS = 30.0  # the longest window a chunk is; ~0.96 MB of PCM, under NATS's default 1 MB


@dataclass
class Job:
    key: str
    audio: np.ndarray  # float32 PCM at 16 kHz
    language: str | None
    beam_size: int
    may_doubt: bool  # the session follows a language it detected: check it when the words are unsure
    step: bool  # a streaming-commit decode (beam 3, loops dropped), not a final one
    reply: str  # the subject its result goes to ("" for a step: it is a request)
    said: Said = field(default_factory=Said)  # a step's committed words at its start (`SpeechModel._steps`)


def job_message(job: Job) -> tuple[dict[str, str], bytes]:
    pcm = np.clip(np.round(job.audio * 32768.0), -32768, 32767).astype("<i2")
    headers = {"Cht-Key": job.key, "Cht-Language": job.language or "", "Cht-Beam": str(job.beam_size),
               "Cht-Doubt": "1" if job.may_doubt else "0", "Cht-Step": "1" if job.step else "0",
               "Cht-Reply": job.reply, "Cht-Said": quote(job.said.text),  # headers are ASCII lines
               "Cht-Said-Until": f"{job.said.until:.3f}"}
    if not job.step:
        headers["Nats-Msg-Id"] = job.key
    return headers, pcm.tobytes()


def parse_job(headers: dict[str, str] | None, data: bytes) -> Job:
    """A job from a message; ValueError for anything that is not one (it is then poison)."""
    headers = headers or {}
    key = headers.get("Cht-Key", "")
    if not key or len(data) % 2 or not data or len(data) > 2 * RATE * MAX_SECONDS:
        raise ValueError(f"not a speech chunk ({len(data)} bytes, key {key!r})")
    try:
        beam = int(headers.get("Cht-Beam", "1"))
    except ValueError:
        raise ValueError(f"chunk {key}: bad beam size {headers.get('Cht-Beam')!r}") from None
    if not 1 <= beam <= 10:
        raise ValueError(f"chunk {key}: beam size {beam} out of range")
    audio = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    return Job(key, audio, headers.get("Cht-Language") or None, beam, headers.get("Cht-Doubt") == "1",
               headers.get("Cht-Step") == "1", headers.get("Cht-Reply", ""), _said(key, headers))


def _said(key: str, headers: dict[str, str]) -> Said:
    try:
        until = float(headers.get("Cht-Said-Until") or 0.0)
    except ValueError:
        raise ValueError(f"chunk {key}: bad Cht-Said-Until {headers.get('Cht-Said-Until')!r}") from None
    if not 0.0 <= until <= MAX_SECONDS:
        raise ValueError(f"chunk {key}: Cht-Said-Until {until} out of range")
    return Said(unquote(headers.get("Cht-Said", "")), until)


@dataclass
class Result:
    key: str
    decoded: Decoded | None  # None: the worker could not decode it (`error` says why)
    busy_s: float  # model seconds the worker spent
    error: str | None = None


def result_message(result: Result) -> tuple[dict[str, str], bytes]:
    body: dict = {"key": result.key, "busy_s": round(result.busy_s, 4), "error": result.error}
    if result.decoded is not None:
        d = result.decoded
        body.update(language=d.language, language_p=d.language_p,
                    words=[[w.start, w.end, w.word, w.probability] for w in d.words])
    return {"Nats-Msg-Id": f"result:{result.key}"}, json.dumps(body).encode()


def parse_result(data: bytes) -> Result:
    body = json.loads(data)
    decoded = None
    if "words" in body:
        decoded = Decoded([Word(float(a), float(b), str(w), float(p)) for a, b, w, p in body["words"]],
                          str(body["language"]), float(body["language_p"]))
    return Result(str(body["key"]), decoded, float(body.get("busy_s", 0.0)), body.get("error"))
