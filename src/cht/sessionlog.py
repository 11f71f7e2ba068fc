"""Each session's `session.log` holds its own lines, also where one process records many.

`cht ingest` and `cht serve` record several sessions in one process, and their log lines all
go through the one `cht` logger. Which session a line belongs to is a context variable, set
where a session's work begins (`as_session`); threads started with `spawn` carry their
starter's context, so every thread a session starts logs as that session. A session's log
takes its own lines, and lines of no session only while it is the only session being logged
(`cht record`: the whole process is that session)."""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

SESSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("cht_session", default=None)
_open: set[logging.Handler] = set()
_open_lock = threading.Lock()


@contextmanager
def as_session(session_id: str | None) -> Iterator[None]:
    """Lines logged here, and in threads `spawn`ed from here, are `session_id`'s."""
    token = SESSION.set(session_id)
    try:
        yield
    finally:
        SESSION.reset(token)


def in_own_session(method: Callable) -> Callable:
    """For a method another thread calls (the speech engine serves every session): its lines
    are those of the object's `session_id`."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with as_session(self.session_id):
            return method(self, *args, **kwargs)
    return wrapper


def spawn(target: Callable, *args, name: str, daemon: bool = True) -> threading.Thread:
    """A started thread running `target(*args)` in a copy of the caller's context (a plain
    Thread starts with an empty one: its lines would belong to no session)."""
    thread = threading.Thread(target=contextvars.copy_context().run, args=(target, *args), name=name, daemon=daemon)
    thread.start()
    return thread


class _OwnLines(logging.Filter):
    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id

    def filter(self, record: logging.LogRecord) -> bool:
        owner = SESSION.get()
        if owner is None:
            with _open_lock:
                return len(_open) == 1
        return owner == self.session_id


def open_session_log(path: Path, session_id: str) -> logging.Handler:
    """cht's log lines of this session go to its `session.log` too, from now on."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_OwnLines(session_id))
    root = logging.getLogger("cht")
    with _open_lock:
        _open.add(handler)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def close_session_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger("cht").removeHandler(handler)
        with _open_lock:
            _open.discard(handler)
        try:
            handler.close()
        except OSError:  # its last lines could not be flushed (a read-only disk): they are on stderr
            pass
