"""Speech regions in, labelled turns out: embed, cluster online, persist; re-cluster a whole
session. Shared by the speaker stage (live and offline) and `cht speakers --recluster`."""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
from threadpoolctl import ThreadpoolController

from cht.errors import SessionError
from cht.session import rewrite_every
from cht.speakers import store
from cht.speakers.cluster import OnlineClusters, label_number, recluster, relabel
from cht.speakers.encoder import Encoder
from cht.speakers.regions import RATE, Region, windows
from cht.speakers.store import Embedded, Turn

WRITE_EVERY_S = 2.0  # speakers.json is rewritten at most this often live, less once it is big (a new speaker: at once)


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    """Found once: looking the BLAS libraries up again for every window cost 5 % of the stage."""
    return ThreadpoolController()


class Labeller:
    def __init__(self, root, encoder: Encoder) -> None:
        self.root = root
        self.encoder = encoder
        self.clusters = OnlineClusters()
        self.labels: list[str] = []  # label per online cluster index
        self.turns: list[Turn] = []
        self._written = 0.0  # monotonic time of the last speakers.json write
        self._written_size = 0  # ... and its size
        self._resume()

    def _resume(self) -> None:
        """A continued session: its clusters are rebuilt from what is on disk."""
        items = store.read_embeddings(self.root)
        old = store.read(self.root)
        for item, label in zip(items, labels_of(items, old.turns)):
            label = label or f"S{max((label_number(x) for x in self.labels), default=0) + 1}"
            if label not in self.labels:
                self.labels.append(label)
                self.clusters.sums.append(np.zeros(256, np.float32))
            k = self.labels.index(label)
            self.clusters.sums[k] = self.clusters.sums[k] + item.embedding * (item.end - item.start)
            self.turns.append(Turn(item.start, item.end, label))
        self.done_until = max((i.end for i in items), default=float("-inf"))

    def add(self, region: Region) -> list[Turn]:
        """Embed a closed region (window by window), label it, and write it down."""
        new = []
        speakers = len(self.labels)
        for a, b in windows(region.start, region.end):
            if b <= self.done_until + 0.01:
                continue  # embedded by an earlier run over the same audio
            audio = region.audio[int((a - region.start) * RATE):int((b - region.start) * RATE)]
            with _blas().limit(limits=1, user_api="blas"):  # small matrices: more BLAS threads only burn CPU
                embedding = self.encoder.embed(audio)
            k = self.clusters.assign(embedding, b - a)
            if k == len(self.labels):
                self.labels.append(f"S{max((label_number(x) for x in self.labels), default=0) + 1}")
            store.append_embedding(self.root, Embedded(a, b, embedding))
            new.append(Turn(a, b, self.labels[k]))
        self.turns += new
        due = time.monotonic() - self._written >= rewrite_every(self._written_size, WRITE_EVERY_S)
        if new and (len(self.labels) > speakers or due):
            self.write()
        return new

    def write(self) -> None:
        """speakers.json from the turns so far (`add` writes at most every `rewrite_every`)."""
        store.set_turns(self.root, self.turns)
        self._written = time.monotonic()
        self._written_size = (self.root / store.MAP).stat().st_size


def labels_of(items: list[Embedded], turns: list[Turn]) -> list[str]:
    """The label each embedded window has in `turns` ("" where none covers its middle)."""
    out = []
    for item in items:
        mid = (item.start + item.end) / 2
        out.append(next((t.speaker for t in turns if t.start <= mid <= t.end), ""))
    return out


def check_recluster(root, speakers: int | None) -> list[Embedded]:
    """The session's embedded windows, or a SessionError saying why it cannot be re-clustered."""
    if speakers is not None and speakers < 1:
        raise SessionError("--speakers must be 1 or more")
    items = store.read_embeddings(root)
    if not items:
        raise SessionError(f"{root.name} has no speaker data: run `cht follow {root.name} --stages speakers`")
    return items


def recluster_session(root, speakers: int | None = None) -> store.SpeakerMap:
    """Cluster every window of the session again and relabel so that a cluster keeps the label
    (and name) it shares the most speech with."""
    items = check_recluster(root, speakers)
    old = store.read(root)
    clusters = recluster(np.stack([i.embedding for i in items]), np.array([i.end - i.start for i in items]),
                         speakers=min(speakers, len(items)) if speakers else None)
    labels = relabel(labels_of(items, old.turns), clusters, [i.end - i.start for i in items],
                     [s.id for s in old.speakers])
    return store.set_turns(root, [Turn(i.start, i.end, label) for i, label in zip(items, labels)])
