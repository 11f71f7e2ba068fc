"""Freed memory goes back to the system (cht.memory): the speech engine's decodes would
otherwise leave RSS at the largest one so far (bench/model_memory.py)."""

from __future__ import annotations

from cht.memory import release_free_memory
from conftest import rss_mib


def test_freed_heap_memory_is_handed_back_and_not_more_often_than_asked():
    # 120 MiB in pieces below glibc's mmap threshold; every other one freed, so the freed ones
    # sit between kept ones inside the heap, where glibc keeps them resident
    pieces = [bytearray(120_000) for _ in range(1000)]
    keep = pieces[1::2]
    del pieces
    kept = rss_mib()
    assert release_free_memory(force=True)
    assert rss_mib() < kept - 30, (kept, rss_mib())
    assert not release_free_memory()  # within TRIM_EVERY_S of the last: nothing to do yet
    assert len(keep) == 500  # the kept half stayed alive throughout
