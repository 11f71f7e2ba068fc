"""Grouping embeddings into speakers, by cosine similarity.

Live (`OnlineClusters`): each new embedding joins the nearest centroid if it is close enough,
else it starts a new speaker; centroids are duration-weighted means, so labels stay put as a
session grows. At stop (`recluster`): average-linkage agglomerative clustering of the whole
session, which can undo an early mistake the online pass had to live with; `relabel` then maps
the new clusters onto the old labels by shared speech time, so names survive.
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.35  # cosine distance: nearer than this is the same speaker (DESIGN.md, measured)


class OnlineClusters:
    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self.sums: list[np.ndarray] = []  # duration-weighted sum of each speaker's embeddings

    def assign(self, embedding: np.ndarray, weight: float) -> int:
        """The index of the speaker this embedding belongs to (a new one if none is near)."""
        best, distance = self.nearest(embedding)
        if best is None or distance > self.threshold:
            self.sums.append(embedding * weight)
            return len(self.sums) - 1
        self.sums[best] = self.sums[best] + embedding * weight
        return best

    def nearest(self, embedding: np.ndarray) -> tuple[int | None, float]:
        if not self.sums:
            return None, 2.0
        centroids = np.stack([s / np.linalg.norm(s) for s in self.sums])
        similarity = centroids @ embedding
        best = int(np.argmax(similarity))
        return best, float(1.0 - similarity[best])


def recluster(embeddings: np.ndarray, weights: np.ndarray, *, speakers: int | None = None,
              threshold: float = THRESHOLD) -> list[int]:
    """Cluster index per embedding: average linkage on cosine distance (each item weighted by
    its duration), merging until `speakers` clusters remain, or while the nearest two clusters
    are closer than `threshold`."""
    n = len(embeddings)
    if n == 0:
        return []
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    distance = 1.0 - unit @ unit.T
    np.fill_diagonal(distance, np.inf)
    size = weights.astype(np.float64).copy()
    members = [[i] for i in range(n)]
    alive = np.ones(n, bool)
    target = max(1, speakers or 1)
    while alive.sum() > target:
        flat = int(np.argmin(distance))
        a, b = divmod(flat, n)
        if speakers is None and distance[a, b] >= threshold:
            break
        # Lance-Williams for (weighted) average linkage: the merged cluster's distance to k
        merged = (size[a] * distance[a] + size[b] * distance[b]) / (size[a] + size[b])
        distance[a], distance[:, a] = merged, merged
        distance[a, a] = np.inf
        distance[b], distance[:, b] = np.inf, np.inf
        size[a] += size[b]
        members[a] += members[b]
        members[b] = []
        alive[b] = False
    labels = [0] * n
    ordered = sorted((m for m in members if m), key=min)  # first heard, first numbered
    for cluster, items in enumerate(ordered):
        for i in items:
            labels[i] = cluster
    return labels


def relabel(old: list[str], new: list[int], durations: list[float], taken: list[str]) -> list[str]:
    """Names for the new clusters: each takes the old label it shares the most speech time with
    (largest overlaps first, each old label once); the rest get fresh labels after `taken`."""
    overlap: dict[tuple[int, str], float] = {}
    for o, c, d in zip(old, new, durations):
        if o:
            overlap[(c, o)] = overlap.get((c, o), 0.0) + d
    mapping: dict[int, str] = {}
    used: set[str] = set()
    for (c, o), _ in sorted(overlap.items(), key=lambda kv: -kv[1]):
        if c not in mapping and o not in used:
            mapping[c], _ = o, used.add(o)
    number = max((label_number(t) for t in taken), default=0)
    for c in sorted(set(new)):
        if c not in mapping:
            number += 1
            mapping[c] = f"S{number}"
    return [mapping[c] for c in new]


def label_number(label: str) -> int:
    return int(label[1:]) if label[:1] == "S" and label[1:].isdigit() else 0
