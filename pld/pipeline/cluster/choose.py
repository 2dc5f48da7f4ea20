"""``--method auto``: the clusterings tried on a task's rule vectors, and the one kept.

One cluster that holds most of the rules is not a clustering: DBSCAN with eps from the
k-distance knee put 54 of 60 rules of a real task into one, and its consolidation was a single
heuristic that restated the task description. Auto therefore tries a few candidates, each on the
same vectors:

* k-means for every k from 2 to :data:`K_MAX` (never more clusters than a third of the rules);
* one cluster per gold label, and each label's rules split further by k-means (k chosen by the
  label's own silhouette), since rules of different labels decide different things;
* HDBSCAN and DBSCAN with eps auto (the earlier default), density methods that leave noise.

A candidate is *admissible* when it has at least two clusters, none of them holds more than
:data:`MAX_SHARE` of the rules and at most :data:`MAX_NOISE` of the rules are noise (noise reaches
no heuristic). The admissible candidate with the highest cosine silhouette wins (ties: the fewer
clusters). When none is admissible, the candidate whose largest cluster is smallest has its
largest cluster cut in two by k-means until no cluster holds more than :data:`MAX_SHARE`.

Every candidate, its numbers and why it won or lost are returned for the clustering's params, so
a reviewer sees the choice and can override it with an explicit method.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pld.pipeline.cluster.fit import KMEANS_RESTARTS, eps_auto, make_clusterer

MAX_SHARE = 0.6
MAX_NOISE = 0.3
K_MAX = 8
# A label's rules are split only when there are enough of them for two clusters of this size.
LABEL_SPLIT_MIN = 3
LABEL_K_MAX = 4


@dataclass
class Candidate:
    """One clustering tried: its name, method and parameters, labels (-1 noise) and numbers."""

    name: str
    method: str
    params: dict[str, Any]
    labels: np.ndarray
    numbers: dict[str, Any] = field(default_factory=dict)

    def record(self, why: str) -> dict[str, Any]:
        """What the clustering's params keep of this candidate."""
        return {"name": self.name, "method": self.method, "params": self.params,
                **self.numbers, "why": why}


def _silhouette(space: np.ndarray, labels: np.ndarray, metric: str) -> float | None:
    from sklearn.metrics import silhouette_score

    mask = labels != -1
    found = len(set(labels[mask].tolist()))
    if found < 2 or int(mask.sum()) <= found:
        return None
    return float(silhouette_score(space[mask], labels[mask], metric=metric))


def _numbers(space: np.ndarray, labels: np.ndarray, metric: str) -> dict[str, Any]:
    n = len(labels)
    sizes = sorted(Counter(int(v) for v in labels if v != -1).values(), reverse=True)
    return {"n_clusters": len(sizes), "sizes": sizes,
            "largest_share": sizes[0] / n if sizes else 0.0,
            "noise_share": float((labels == -1).sum()) / n if n else 0.0,
            "silhouette": _silhouette(space, labels, metric)}


def _kmeans(space: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return np.asarray(KMeans(n_clusters=k, random_state=seed,
                             n_init=KMEANS_RESTARTS).fit_predict(space), dtype=int)


def _k_range(n: int, most: int) -> range:
    return range(2, max(2, min(most, n // 3)) + 1) if n >= 2 else range(0)


def _split_label(space: np.ndarray, seed: int, metric: str) -> np.ndarray:
    """One label's rules: one cluster, or k-means parts when its silhouette says they separate."""
    n = len(space)
    best, best_sil = np.zeros(n, dtype=int), 0.0
    if n < 2 * LABEL_SPLIT_MIN:
        return best
    for k in _k_range(n, LABEL_K_MAX):
        labels = _kmeans(space, k, seed)
        sil = _silhouette(space, labels, metric)
        # Only a split that separates (silhouette above 0) beats keeping the label whole.
        if sil is not None and sil > best_sil:
            best, best_sil = labels, sil
    return best


def _by_label(space: np.ndarray, rule_labels: Sequence[str], seed: int, metric: str,
              split: bool) -> np.ndarray:
    out = np.empty(len(rule_labels), dtype=int)
    next_id = 0
    for lab in sorted(set(rule_labels)):
        idx = np.array([i for i, x in enumerate(rule_labels) if x == lab])
        parts = _split_label(space[idx], seed, metric) if split else np.zeros(len(idx), int)
        out[idx] = parts + next_id
        next_id += int(parts.max()) + 1
    return out


def candidates(space: np.ndarray, rule_labels: Sequence[str], *, min_samples: int, seed: int,
               metric: str = "cosine") -> list[Candidate]:
    """Every clustering auto tries on ``space`` (see the module docstring), with its numbers."""
    n = len(space)
    found: list[Candidate] = []
    for k in _k_range(n, K_MAX):
        found.append(Candidate(f"kmeans k={k}", "kmeans", {"k": k}, _kmeans(space, k, seed)))
    if len(set(rule_labels)) >= 2:
        found.append(Candidate("one cluster per label", "by-label", {},
                               _by_label(space, rule_labels, seed, metric, split=False)))
    found.append(Candidate("per label, split by k-means", "by-label-kmeans",
                           {"k_max": LABEL_K_MAX},
                           _by_label(space, rule_labels, seed, metric, split=True)))
    if n > max(2, min_samples):  # a dense region needs more rules than min_samples
        density = make_clusterer("hdbscan", 0.0, min_samples, None, seed, metric)
        found.append(Candidate(f"hdbscan min_samples={min_samples}", "hdbscan",
                               {"min_samples": min_samples},
                               np.asarray(density.fit_predict(space), dtype=int)))
        eps, _info = eps_auto(space, min_samples, metric)
        dbscan = make_clusterer("dbscan", eps, min_samples, None, seed, metric)
        found.append(Candidate(f"dbscan eps auto ({eps:.3g})", "dbscan",
                               {"eps": eps, "min_samples": min_samples},
                               np.asarray(dbscan.fit_predict(space), dtype=int)))
    for c in found:
        c.numbers = _numbers(space, c.labels, metric)
    return found


def _flaw(numbers: dict[str, Any]) -> str | None:
    """Why a candidate is not admissible; None when it is."""
    if numbers["n_clusters"] < 2:
        return f"{numbers['n_clusters']} cluster(s)"
    if numbers["largest_share"] > MAX_SHARE:
        return (f"its largest cluster holds {numbers['largest_share']:.0%} of the rules "
                f"(more than {MAX_SHARE:.0%})")
    if numbers["noise_share"] > MAX_NOISE:
        return f"{numbers['noise_share']:.0%} of the rules are noise (more than {MAX_NOISE:.0%})"
    return None


def _rank(c: Candidate) -> tuple[float, int]:
    sil = c.numbers["silhouette"]
    return (-1.0 if sil is None else sil, -c.numbers["n_clusters"])


def bisect_largest(space: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """Cut the largest cluster in two (k-means; halves by position when its vectors are all
    equal) until none holds more than :data:`MAX_SHARE` of the rules; the labels and the cuts."""
    out = np.array(labels, dtype=int, copy=True)
    n, cuts = len(out), 0
    while True:
        counts = Counter(int(v) for v in out if v != -1)
        if not counts:
            return out, cuts
        big, size = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
        if size <= MAX_SHARE * n or size < 2:
            return out, cuts
        idx = np.flatnonzero(out == big)
        part = _kmeans(space[idx], 2, seed) if len(np.unique(space[idx], axis=0)) >= 2 \
            else np.array([0] * (len(idx) // 2) + [1] * (len(idx) - len(idx) // 2))
        out[idx[part == 1]] = int(out.max()) + 1
        cuts += 1


def choose(space: np.ndarray, rule_labels: Sequence[str], *, min_samples: int, seed: int,
           metric: str = "cosine") -> tuple[np.ndarray, dict[str, Any]]:
    """The cluster labels auto keeps (-1 noise, not yet ordered by size) and the record of the
    choice: ``max_share``, ``max_noise``, ``candidates`` (each with its numbers and why it won
    or lost), ``chosen`` (its name) and ``why``."""
    tried = candidates(space, rule_labels, min_samples=min_samples, seed=seed, metric=metric)
    flaws = {c.name: _flaw(c.numbers) for c in tried}
    ok = sorted((c for c in tried if flaws[c.name] is None), key=_rank, reverse=True)
    info: dict[str, Any] = {"max_share": MAX_SHARE, "max_noise": MAX_NOISE}
    if ok:
        won = ok[0]
        labels = won.labels
        sil = won.numbers["silhouette"]
        why = (f"the highest silhouette ({sil:.3f}) of the {len(ok)} candidates that keep every "
               f"cluster at or below {MAX_SHARE:.0%} of the rules with at most {MAX_NOISE:.0%} "
               "noise" if sil is not None else "the only admissible candidate")
    else:
        won = min(tried, key=lambda c: (c.numbers["largest_share"] or 1.0,
                                        -(c.numbers["silhouette"] or -1.0)))
        labels, cuts = bisect_largest(space, won.labels, seed)
        why = (f"no candidate kept every cluster at or below {MAX_SHARE:.0%} of the rules; the "
               f"one with the smallest largest cluster had it cut in two {cuts} time(s)")
        info["bisected"] = cuts
    info["candidates"] = [c.record("chosen" if c is won else
                                   flaws[c.name] or "a lower silhouette") for c in tried]
    info.update(chosen=won.name, why=why)
    return labels, info
