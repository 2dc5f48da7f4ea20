"""The clustering maths of stage 2b, on vectors and texts only (no workspace).

DBSCAN's eps from the k-distance curve (:func:`eps_auto`), the clusterer itself (DBSCAN,
HDBSCAN, k-means, or the labels ``auto`` chose: :class:`GivenLabels`) fitted through BERTopic
with an identity ``umap_model`` unless UMAP is asked for, the 2-D projection for the app's map,
cluster metrics, c-TF-IDF keywords, a cover cluster for each label left wholly in noise
(:func:`cover_labels`) and the automatic cluster names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from pld.errors import BadInput

AUTO = "auto"  # try several clusterings, keep one that is not a collapse (cluster.choose)
METHODS = (AUTO, "dbscan", "hdbscan", "kmeans")
TOP_N_WORDS = 10
NAME_WORDS = 3
UMAP_DIMS = 5
UMAP_MIN_RULES = 10
KMEANS_RESTARTS = 10
# Rows per block when computing k-distances, so memory stays O(block * n) not O(n^2).
_KDIST_BLOCK = 1024


# ---------------------------------------------------------------------------------------------
# eps from the k-distance curve


def kdistances(vectors: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    """Each point's distance to its k-th nearest point, counting the point itself as the first.

    That is exactly DBSCAN's core-point test: with ``min_samples=k`` a point is core iff this
    distance is <= eps. ``metric`` is ``cosine`` (rows need not be normalised) or ``euclidean``.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise BadInput(f"k-distance needs 1 <= k <= number of points ({n}), got k={k}")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        x = x / norms
    elif metric != "euclidean":
        raise BadInput(f"unknown metric {metric!r} (cosine or euclidean)")
    sq = (x * x).sum(axis=1)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, _KDIST_BLOCK):
        block = x[start:start + _KDIST_BLOCK]
        if metric == "cosine":
            d = 1.0 - block @ x.T
        else:
            d = np.sqrt(np.maximum(sq[start:start + len(block), None] + sq[None, :]
                                   - 2.0 * block @ x.T, 0.0))
        # The point itself is at distance 0 (up to rounding); force it so it counts as nearest.
        d[np.arange(len(block)), np.arange(start, start + len(block))] = 0.0
        d = np.maximum(d, 0.0)
        out[start:start + len(block)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def eps_auto(vectors: np.ndarray, min_samples: int,
             metric: str = "cosine") -> tuple[float, dict[str, Any]]:
    """Pick DBSCAN's eps at the knee of the sorted k-distance curve (k = ``min_samples``).

    The k-distances sorted ascending form a flat run (points inside dense regions) followed by a
    steep rise (sparse points). Both axes are scaled to [0, 1]; the knee is the point farthest
    below the chord from the first to the last point (the "kneedle" difference curve
    ``x - y``). Returns eps and a dict describing how it was chosen (stored in the params).
    """
    x = np.asarray(vectors)
    n = int(x.shape[0])
    if n < 2:
        raise BadInput(f"eps auto needs at least 2 rules, got {n}")
    if min_samples < 1:
        raise BadInput(f"min_samples must be >= 1, got {min_samples}")
    # min_samples=1 would make every k-distance 0; the nearest other point is the useful curve.
    k = min(max(min_samples, 2), n)
    curve = np.sort(kdistances(x, k, metric))
    lo, hi = float(curve[0]), float(curve[-1])
    shape = "convex"
    if hi - lo <= 1e-12:
        # All points equally dense: any eps at that distance makes them all core.
        index, shape = n - 1, "flat"
    else:
        xs = np.linspace(0.0, 1.0, n)
        ys = (curve - lo) / (hi - lo)
        below = xs - ys
        if below.max() > 1e-9:
            index = int(np.argmax(below))
        else:
            # No point below the chord (a concave curve): its knee is the farthest above it.
            index, shape = int(np.argmax(ys - xs)), "concave"
    eps = float(curve[index])
    floor = 1e-6
    info = {
        "method": "kneedle (max distance from the chord of the sorted k-distance curve)",
        "metric": metric, "k": k, "n": n, "knee_index": index, "curve": shape,
        "eps": max(eps, floor), "kdist_min": lo, "kdist_median": float(np.median(curve)),
        "kdist_max": hi,
    }
    if eps < floor:
        # Duplicated rules give k-distances of 0; eps must stay > 0 for DBSCAN.
        info["note"] = f"knee at distance {eps:.3g}; raised to {floor}"
        eps = floor
    return eps, info

# ---------------------------------------------------------------------------------------------
# fitting


def make_clusterer(method: str, eps: float, min_samples: int, k: int | None, seed: int,
                   metric: str) -> Any:
    """The sklearn clusterer BERTopic is given as its ``hdbscan_model``."""
    if method == "dbscan":
        from sklearn.cluster import DBSCAN

        return DBSCAN(eps=eps, min_samples=min_samples, metric=metric)
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        return HDBSCAN(min_cluster_size=max(2, min_samples), min_samples=min_samples,
                       metric=metric, copy=True)
    from sklearn.cluster import KMeans

    # Ten restarts, not sklearn's single k-means++ start: one unlucky start can merge two
    # topics, and restarts are cheap at the size of a rule set.
    return KMeans(n_clusters=int(k or 2), random_state=seed, n_init=KMEANS_RESTARTS)


class GivenLabels:
    """A "clusterer" whose labels were chosen already (by ``auto``): BERTopic fits it like any
    other, so those clusters get their c-TF-IDF keywords the same way."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = np.asarray(labels, dtype=int)

    def fit(self, vectors: np.ndarray, y: Any = None) -> GivenLabels:
        """Keep the given labels as ``labels_`` (the vectors were clustered already)."""
        self.labels_ = self.labels
        return self


def reduce_dims(vectors: np.ndarray, seed: int) -> np.ndarray:
    """The vectors reduced by UMAP to :data:`UMAP_DIMS` dimensions (cosine in, Euclidean out)."""
    from umap import UMAP

    n = vectors.shape[0]
    # n_jobs=1: a fixed random_state makes UMAP single-threaded anyway (it warns otherwise).
    reducer = UMAP(n_components=UMAP_DIMS, n_neighbors=min(15, n - 1), min_dist=0.0,
                   metric="cosine", random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(vectors), dtype=np.float64)


def project(vectors: np.ndarray, umap: bool, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates for the app's map: PCA (cheap, deterministic) or UMAP."""
    n = vectors.shape[0]
    if n < 2:
        return np.zeros((n, 2)), "none"
    if umap and n >= UMAP_MIN_RULES:
        from umap import UMAP

        reducer = UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine",
                       random_state=seed, n_jobs=1)
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float64), "umap"
    from sklearn.decomposition import PCA

    n_comp = min(2, n, vectors.shape[1])
    xy = PCA(n_components=n_comp, svd_solver="full").fit_transform(vectors.astype(np.float64))
    if n_comp < 2:
        xy = np.hstack([xy, np.zeros((n, 2 - n_comp))])
    return xy, "pca"


# Words of two or more characters, a hyphenated word ("account-access", "e-mail") kept whole.
TOKEN_PATTERN = r"(?u)\b\w[\w-]*\w\b"


def vectorizer() -> Any:
    """The bag of words c-TF-IDF counts (English stop words dropped, hyphenated words whole)."""
    from sklearn.feature_extraction.text import CountVectorizer

    # min_df=1: clusters of a few short rules would otherwise leave an empty vocabulary.
    return CountVectorizer(stop_words="english", min_df=1, token_pattern=TOKEN_PATTERN)


def relabel_by_size(labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Labels 0..m-1 by decreasing size (ties: first appearance); -1 (noise) stays -1."""
    counts = Counter(int(v) for v in labels if v != -1)
    first = {}
    for i, v in enumerate(labels):
        first.setdefault(int(v), i)
    order = sorted(counts, key=lambda c: (-counts[c], first[c]))
    mapping = {old: new for new, old in enumerate(order)}
    out = np.array([mapping.get(int(v), -1) for v in labels], dtype=int)
    return out, mapping


def fit_bertopic(docs: list[str], space: np.ndarray,
                  clusterer: Any) -> tuple[np.ndarray, dict[int, list[str]], str | None]:
    """Cluster through BERTopic; labels (by size) and c-TF-IDF keywords per cluster label.

    The third item is a note when BERTopic could not build its topic representation (e.g. the
    rules hold only stop words); the clusters are then kept without keywords.
    """
    from bertopic import BERTopic
    from bertopic.dimensionality import BaseDimensionalityReduction

    model = BERTopic(
        embedding_model=None, umap_model=BaseDimensionalityReduction(),
        hdbscan_model=clusterer, vectorizer_model=vectorizer(), top_n_words=TOP_N_WORDS,
        calculate_probabilities=False, verbose=False,
        # BERTopic's English cleaning deletes every character but letters, digits and spaces
        # before counting, gluing "account-access" into "accountaccess"; with no language it
        # leaves the words to the vectorizer. The embeddings are given, so it picks no model.
        language=None,
    )
    note = None
    raw_keywords: dict[int, list[str]] = {}
    try:
        topics, _ = model.fit_transform(docs, embeddings=space)
        raw = np.asarray(topics, dtype=int)
        for topic in set(raw.tolist()) - {-1}:
            words = model.get_topic(topic) or []
            raw_keywords[topic] = [w for w, _ in words if w][:TOP_N_WORDS]
    except (ValueError, TypeError) as e:
        # ValueError: empty vocabulary. TypeError: BERTopic 0.17's c-TF-IDF fails on a
        # one-word vocabulary (scipy.sparse.diags gets a scalar). Either way the clustering
        # itself is done; keep it and say why there are no keywords.
        fitted = getattr(clusterer, "labels_", None)
        if fitted is None:
            raise
        raw = np.asarray(fitted, dtype=int)
        note = f"no c-TF-IDF keywords: {e}"
    labels, mapping = relabel_by_size(raw)
    keywords = {new: raw_keywords.get(old, []) for old, new in mapping.items()}
    return labels, keywords, note


def clustering_metrics(vectors: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Cluster count, noise share, cosine silhouette (non-noise points), sizes (largest first)
    and the largest cluster's share of all rules."""
    n = len(labels)
    noise = int((labels == -1).sum())
    counts = Counter(int(v) for v in labels if v != -1)
    silhouette = None
    mask = labels != -1
    if len(counts) >= 2 and int(mask.sum()) > len(counts):
        from sklearn.metrics import silhouette_score

        silhouette = float(silhouette_score(vectors[mask], labels[mask], metric="cosine"))
    sizes = sorted(counts.values(), reverse=True)
    return {
        "n_rules": n, "n_clusters": len(counts), "n_noise": noise,
        "noise_share": noise / n if n else 0.0, "silhouette": silhouette,
        "sizes": sizes, "largest_share": sizes[0] / n if sizes else 0.0,
    }


def cover_labels(labels: np.ndarray,
                 rule_labels: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
    """Give every task label whose rules are all noise one cluster made of those rules.

    Density clustering leaves a label with few rules (StereoSet's religion: 5 of 120) in noise,
    and noise rules reach no heuristic, so the student can never answer that label. Returns the
    new cluster labels and, for each added cluster, the task label it keeps.
    """
    clustered = {lab for lab, c in zip(rule_labels, labels, strict=True) if c != -1}
    out = np.array(labels, dtype=int, copy=True)
    added: dict[int, str] = {}
    next_label = int(out.max(initial=-1)) + 1
    for lab in sorted(set(rule_labels) - clustered):
        out[[i for i, x in enumerate(rule_labels) if x == lab]] = next_label
        added[next_label] = lab
        next_label += 1
    return out, added


def auto_name(keywords: Sequence[str], label: int) -> str:
    """A reviewer-facing name from the top keywords, e.g. ``refund · charge · card``."""
    words = [w for w in keywords if w][:NAME_WORDS]
    return " · ".join(words) if words else f"cluster {label}"


def class_keywords(texts: dict[int, list[str]]) -> dict[int, list[str]]:
    """BERTopic's c-TF-IDF over given clusters' rule texts: the top keywords per cluster id."""
    from bertopic.vectorizers import ClassTfidfTransformer

    ids = sorted(texts)
    if not ids:
        return {}
    words_of = vectorizer()
    try:
        counts = words_of.fit_transform([" ".join(texts[i]) for i in ids])
        weights = ClassTfidfTransformer().fit_transform(counts).toarray()
    except (ValueError, TypeError):
        # Empty or one-word vocabulary (see fit_bertopic): no keywords to show.
        return {i: [] for i in ids}
    words = words_of.get_feature_names_out()
    out = {}
    for row, cid in zip(weights, ids, strict=True):
        order = np.argsort(-row, kind="stable")[:TOP_N_WORDS]
        out[cid] = [str(words[j]) for j in order if row[j] > 0]
    return out
