"""Hand the memory the speech model freed back to the system.

A decode allocates tens of MiB of buffers and frees them; glibc keeps freed memory in its
heaps for reuse, so the process's RSS ratchets up to the largest decode so far (a longer
window, a bigger batch) and stays there: a 30-minute soak read it as a creep of 14–23 MiB/h
(2 MiB/h trimmed), bench/model_memory.py as 283–390 MiB against 188 trimmed. `malloc_trim`
returns those free pages; called at most every TRIM_EVERY_S after a decode it cost nothing
measurable, and RSS stays at what is in use. Elsewhere than glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

TRIM_EVERY_S = 10.0

_lock = threading.Lock()
_last = float("-inf")


def _load_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_trim()


def release_free_memory(force: bool = False) -> bool:
    """Return freed heap memory to the system (at most every TRIM_EVERY_S unless `force`);
    True when it was done."""
    global _last
    if _malloc_trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if not force and now - _last < TRIM_EVERY_S:
            return False
        _last = now
    _malloc_trim(0)
    return True
