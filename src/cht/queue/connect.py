"""Reach the NATS server named by `--queue URL`; set up the streams both sides use.

Credentials (a user and password or a token in the URL, or a `.creds` file) are never printed
or logged: every message shows the URL with them blanked out.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

from cht.errors import ChtError

log = logging.getLogger("cht.queue")

CHUNK_STREAM = "CHT_CHUNKS"  # durable work queue: a chunk is removed when a worker acks it
CHUNK_SUBJECT = "cht.chunk"
RESULT_STREAM = "CHT_RESULTS"  # results wait here until their recording process takes them
RESULT_SUBJECT = "cht.result"  # + "." + the recording process's id
STEP_SUBJECT = "cht.step"  # streaming-commit decodes: request/reply, never stored
WORKERS = "cht-workers"  # the durable consumer (and queue group) every worker shares
MAX_DELIVER = 5  # a chunk no worker could finish in this many tries is dropped as poison
RESULTS_MAX_AGE_S = 3600.0  # results nobody took within an hour are dropped (their process is gone)
SCHEMES = ("nats", "tls")


class QueueError(ChtError):
    """The queue cannot be used as asked (a bad URL, unreachable, refused credentials)."""


def redact(url: str) -> str:
    """The URL without its credentials, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise QueueError(f"--queue {redact(url)}: not a NATS URL; use nats://HOST:4222 (tls://HOST:4222 for TLS)")
    return url


async def connect(url: str, *, creds: Path | None = None, name: str = "cht"):
    """A connection that reconnects for ever once made; the first attempt fails fast with one
    line saying why (unreachable, or credentials refused)."""
    import nats
    from nats import errors

    check_url(url)
    if creds is not None and not creds.is_file():
        raise QueueError(f"--queue-creds {creds}: no such file (give a NATS .creds file)")
    seen: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        seen.append(exc)
        if nc_ready:  # before, the first attempt's failure is the one line said below
            log.warning("queue %s: %s", redact(url), type(exc).__name__ if "://" in str(exc) else exc)

    async def on_disconnect() -> None:
        log.warning("queue %s: disconnected, reconnecting", redact(url))

    async def on_reconnect() -> None:
        log.info("queue %s: reconnected", redact(url))

    nc_ready = False
    try:
        nc = await nats.connect(
            servers=[url], name=name, connect_timeout=3, reconnect_time_wait=0.5, max_reconnect_attempts=1,
            user_credentials=str(creds) if creds else None, error_cb=on_error,
            disconnected_cb=on_disconnect, reconnected_cb=on_reconnect,
        )
    except (errors.Error, OSError, asyncio.TimeoutError) as exc:
        causes = seen + [exc]
        if any(isinstance(e, errors.AuthorizationError) or "Authorization" in str(e) for e in causes):
            raise QueueError(f"--queue {redact(url)}: the server refused the credentials; "
                             "check the user and password, token or --queue-creds file") from None
        raise QueueError(f"--queue {redact(url)}: cannot reach the NATS server; "
                         "check the address and that nats-server is running") from None
    nc.options["max_reconnect_attempts"] = -1  # connected once: from now on, never give up
    nc_ready = True
    return nc


async def probe(url: str, *, creds: Path | None = None) -> None:
    """Connect once and leave: QueueError if the server cannot be used."""
    nc = await connect(url, creds=creds)
    await nc.close()


async def ensure_streams(js) -> None:
    """Create the chunk and result streams if missing: the same call from every process, so
    whichever starts first sets them up."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError

    for config in (
        StreamConfig(name=CHUNK_STREAM, subjects=[CHUNK_SUBJECT], retention=RetentionPolicy.WORK_QUEUE,
                     storage=StorageType.FILE, duplicate_window=120.0),
        StreamConfig(name=RESULT_STREAM, subjects=[f"{RESULT_SUBJECT}.>"], retention=RetentionPolicy.LIMITS,
                     storage=StorageType.FILE, max_age=RESULTS_MAX_AGE_S, duplicate_window=120.0),
    ):
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
