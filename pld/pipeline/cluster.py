"""Stage 2b: cluster the embedded rules and let reviewers adjust the result.

Clustering runs through BERTopic on the stored embeddings (never re-embedding): the clusterer is
DBSCAN (the paper: cosine, eps=0.4, min_samples=6), HDBSCAN or k-means, passed as BERTopic's
``hdbscan_model``. By default no dimensionality reduction happens (BERTopic gets an identity
``umap_model``), so DBSCAN's cosine ``eps`` means what it means in the paper; ``umap=True``
reduces to 5 dimensions first (then distances are Euclidean in UMAP space). BERTopic's c-TF-IDF
keywords name each cluster for reviewers.

The paper's eps is calibrated to Gemini embeddings; ``eps="auto"`` picks it from the k-distance
curve of the actual embeddings (:func:`eps_auto`). Noise rules are kept as members with a NULL
``cluster_id`` so reviewers can see and move them; ``cluster(..., cover=True)`` gives each label
whose rules all fell into noise one cluster of them (:func:`cover_labels`), so no label is left
without a heuristic. Every clustering is one ``clusterings`` row (params + metrics) with status
``proposed``; a reviewer accepts one per task. Reviewer edits (rename, move, merge, split) keep
``clusters.size`` and the metrics consistent and write an audit row to ``reviews``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from pld import review
from pld.errors import BadInput, NotReady
from pld.pipeline.embed import DEFAULT_EMBEDDER, check_embedder_name, embed_rules, load_vectors
from pld.pipeline.runs import ProgressCallback, stage_run
from pld.review import SELF_DECLARED, StaleEdit
from pld.tasks.store import task_info
from pld.workspace import Workspace, dumps, loads, now

METHODS = ("dbscan", "hdbscan", "kmeans")
PROPOSED, ACCEPTED, SUPERSEDED = "proposed", "accepted", "superseded"
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
# validation


def _parse_eps(eps: float | str, umap: bool) -> float | str:
    if isinstance(eps, str):
        text = eps.strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = float(text)
        except ValueError:
            raise BadInput(f"--eps must be a number or 'auto', got {eps!r}") from None
    elif isinstance(eps, bool) or not isinstance(eps, int | float):
        raise BadInput(f"--eps must be a number or 'auto', got {eps!r}")
    else:
        value = float(eps)
    if umap:
        if not (np.isfinite(value) and value > 0):
            raise BadInput(f"--eps must be > 0, got {value}")
    elif not 0 < value <= 2:
        raise BadInput(f"--eps must be in (0, 2] for cosine distance (or 'auto'), got {value}")
    return value


def _validate(method: str, eps: float | str, min_samples: int, k: int | None,
              umap: bool) -> float | str | None:
    """Check the options; return the parsed eps (None unless the method is DBSCAN)."""
    if method not in METHODS:
        raise BadInput(f"unknown --method {method!r} (choose: {', '.join(METHODS)})")
    parsed = _parse_eps(eps, umap) if method == "dbscan" else None
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise BadInput(f"--min-samples must be an integer >= 1, got {min_samples!r}")
    if method == "kmeans":
        if k is None:
            raise BadInput("--method kmeans needs --k (the number of clusters)")
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise BadInput(f"--k must be an integer >= 2, got {k!r}")
    return parsed


# ---------------------------------------------------------------------------------------------
# fitting


def _make_clusterer(method: str, eps: float, min_samples: int, k: int | None, seed: int,
                    metric: str) -> Any:
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


def _reduce(vectors: np.ndarray, seed: int) -> np.ndarray:
    from umap import UMAP

    n = vectors.shape[0]
    # n_jobs=1: a fixed random_state makes UMAP single-threaded anyway (it warns otherwise).
    reducer = UMAP(n_components=UMAP_DIMS, n_neighbors=min(15, n - 1), min_dist=0.0,
                   metric="cosine", random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(vectors), dtype=np.float64)


def _project(vectors: np.ndarray, umap: bool, seed: int) -> tuple[np.ndarray, str]:
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


def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import CountVectorizer

    # min_df=1: clusters of a few short rules would otherwise leave an empty vocabulary.
    return CountVectorizer(stop_words="english", min_df=1)


def _relabel_by_size(labels: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Labels 0..m-1 by decreasing size (ties: first appearance); -1 (noise) stays -1."""
    counts = Counter(int(v) for v in labels if v != -1)
    first = {}
    for i, v in enumerate(labels):
        first.setdefault(int(v), i)
    order = sorted(counts, key=lambda c: (-counts[c], first[c]))
    mapping = {old: new for new, old in enumerate(order)}
    out = np.array([mapping.get(int(v), -1) for v in labels], dtype=int)
    return out, mapping


def _fit_bertopic(docs: list[str], space: np.ndarray,
                  clusterer: Any) -> tuple[np.ndarray, dict[int, list[str]], str | None]:
    """Cluster through BERTopic; labels (by size) and c-TF-IDF keywords per cluster label.

    The third item is a note when BERTopic could not build its topic representation (e.g. the
    rules hold only stop words); the clusters are then kept without keywords.
    """
    from bertopic import BERTopic
    from bertopic.dimensionality import BaseDimensionalityReduction

    model = BERTopic(
        embedding_model=None, umap_model=BaseDimensionalityReduction(),
        hdbscan_model=clusterer, vectorizer_model=_vectorizer(), top_n_words=TOP_N_WORDS,
        calculate_probabilities=False, verbose=False,
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
    labels, mapping = _relabel_by_size(raw)
    keywords = {new: raw_keywords.get(old, []) for old, new in mapping.items()}
    return labels, keywords, note


def _metrics(vectors: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Cluster count, noise share, cosine silhouette (non-noise points), sizes (largest first)."""
    n = len(labels)
    noise = int((labels == -1).sum())
    counts = Counter(int(v) for v in labels if v != -1)
    silhouette = None
    mask = labels != -1
    if len(counts) >= 2 and int(mask.sum()) > len(counts):
        from sklearn.metrics import silhouette_score

        silhouette = float(silhouette_score(vectors[mask], labels[mask], metric="cosine"))
    return {
        "n_rules": n, "n_clusters": len(counts), "n_noise": noise,
        "noise_share": noise / n if n else 0.0, "silhouette": silhouette,
        "sizes": sorted(counts.values(), reverse=True),
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


def cluster(
    ws: Workspace,
    task: str,
    *,
    method: str = "dbscan",
    eps: float | str = 0.4,
    min_samples: int = 6,
    k: int | None = None,
    embed_model: str = DEFAULT_EMBEDDER,
    umap: bool = False,
    seed: int = 0,
    cover: bool = False,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Cluster the task's ok rules and store a ``proposed`` clustering; return its id.

    Embeds missing rules first (:func:`embed_rules`), then clusters the stored vectors. ``eps``
    (DBSCAN only) is a cosine distance in (0, 2], or ``"auto"`` to pick it with
    :func:`eps_auto`. ``cover`` adds a cluster for each label left wholly in noise
    (:func:`cover_labels`). Raises :class:`BadInput` for bad options and :class:`NotReady` when the
    task has no ok rules.
    """
    parsed_eps = _validate(method, eps, min_samples, k, umap)
    check_embedder_name(embed_model)
    task_info(ws, task)
    rules = ws.query(
        "SELECT id, rule, label FROM micro_instructions WHERE task = ? AND status = 'ok' "
        "ORDER BY id",
        [task],
    )
    if not rules:
        raise NotReady(f"task {task!r} has no extracted rules; run extract first")
    n = len(rules)
    if method == "kmeans" and k is not None and k > n:
        raise BadInput(f"--k {k} is more than the number of rules ({n})")
    if umap and n < UMAP_MIN_RULES:
        raise BadInput(f"--umap needs at least {UMAP_MIN_RULES} rules, the task has {n}")
    if parsed_eps == "auto" and n < 2:
        raise BadInput(f"--eps auto needs at least 2 rules, the task has {n}")

    # Embedding (when rules are new) is the slow part, so the caller sees its progress first.
    embed_rules(ws, task, model=embed_model, on_progress=on_progress)
    metric = "euclidean" if umap else "cosine"
    params: dict[str, Any] = {"method": method, "embed_model": embed_model, "umap": umap,
                              "seed": seed, "metric": metric if method != "kmeans" else None}
    if method in ("dbscan", "hdbscan"):
        params["min_samples"] = min_samples
    if method == "kmeans":
        params["k"] = k
    if cover:
        params["cover_labels"] = True
    run_params = {**params, "eps": eps} if method == "dbscan" else dict(params)
    with stage_run(ws, task, "cluster", run_params, on_progress=on_progress) as run:
        run.set_total(4)
        ids = [int(r["id"]) for r in rules]
        docs = [r["rule"] or "" for r in rules]
        vectors = load_vectors(ws, ids, embed_model).astype(np.float64)
        space = _reduce(vectors, seed) if umap else vectors
        run.advance()
        eps_value: float | None = None
        if method == "dbscan":
            if isinstance(parsed_eps, float):
                eps_value = parsed_eps
                params.update(eps=eps_value, eps_method="given")
            else:
                eps_value, info = eps_auto(space, min_samples, metric)
                params.update(eps=eps_value, eps_method="auto", eps_auto=info)
        clusterer = _make_clusterer(method, eps_value or 0.0, min_samples, k, seed, metric)
        labels, keywords, note = _fit_bertopic(docs, space, clusterer)
        if note:
            params["representation_note"] = note
        added: dict[int, str] = {}
        if cover:
            labels, added = cover_labels(labels, [r["label"] for r in rules])
            params["label_clusters"] = sorted(added.values())
        run.advance()
        xy, projection = _project(vectors, umap, seed)
        params["projection"] = projection
        metrics = _metrics(vectors, labels)
        run.advance()
        clustering_id = _store(ws, task, method, embed_model, params, metrics, ids, labels,
                               keywords, xy)
        if added:
            _name_label_clusters(ws, clustering_id, added)
        run.advance()
    return clustering_id


def _store(ws: Workspace, task: str, method: str, embed_model: str, params: dict[str, Any],
           metrics: dict[str, Any], ids: list[int], labels: np.ndarray,
           keywords: dict[int, list[str]], xy: np.ndarray) -> int:
    sizes = Counter(int(v) for v in labels if v != -1)
    with ws.write() as db:
        clustering_id = int(db["clusterings"].insert({
            "task": task, "method": method, "embed_model": embed_model, "params": dumps(params),
            "metrics": dumps(metrics), "status": PROPOSED, "created_at": now(),
        }).last_pk)
        cluster_ids: dict[int, int] = {}
        for label in sorted(sizes):
            words = keywords.get(label, [])
            cluster_ids[label] = int(db["clusters"].insert({
                "clustering_id": clustering_id, "label": label, "name": auto_name(words, label),
                "keywords": dumps(words), "size": sizes[label],
            }).last_pk)
        db["cluster_members"].insert_all(
            ({"clustering_id": clustering_id, "rule_id": rid,
              "cluster_id": cluster_ids.get(int(lab)), "x": float(p[0]), "y": float(p[1])}
             for rid, lab, p in zip(ids, labels, xy, strict=True)),
            batch_size=500,
        )
    return clustering_id


def _name_label_clusters(ws: Workspace, clustering_id: int, added: dict[int, str]) -> None:
    """Keywords (c-TF-IDF, as for every cluster) and a name that says why the cluster exists."""
    keywords = _ctfidf_keywords(ws, clustering_id)
    with ws.write() as db:
        for row in ws.query("SELECT id, label FROM clusters WHERE clustering_id = ?",
                            [clustering_id]):
            if row["label"] in added:
                words = keywords.get(row["id"], [])
                words_name = auto_name(words, row["label"])
                db["clusters"].update(row["id"], {
                    "keywords": dumps(words),
                    "name": f"{added[row['label']]}: kept from noise ({words_name})",
                })


# ---------------------------------------------------------------------------------------------
# reading


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["params"] = loads(row["params"], {})
    row["metrics"] = loads(row["metrics"], {})
    return row


def get_clustering(ws: Workspace, clustering_id: int) -> dict[str, Any]:
    """One clustering row (params and metrics decoded); :class:`BadInput` if there is none."""
    rows = ws.query("SELECT * FROM clusterings WHERE id = ?", [clustering_id])
    if not rows:
        raise BadInput(f"clustering {clustering_id} not found")
    return _decode(rows[0])


def list_clusterings(ws: Workspace, task: str) -> list[dict[str, Any]]:
    """All clusterings of a task, newest first, params and metrics decoded."""
    rows = ws.query("SELECT * FROM clusterings WHERE task = ? ORDER BY id DESC", [task])
    return [_decode(r) for r in rows]


def current_clustering(ws: Workspace, task: str) -> dict[str, Any] | None:
    """The task's accepted clustering, else its latest one, else None."""
    rows = ws.query(
        "SELECT * FROM clusterings WHERE task = ? ORDER BY (status = ?) DESC, id DESC LIMIT 1",
        [task, ACCEPTED],
    )
    return _decode(rows[0]) if rows else None


def cluster_summary(ws: Workspace, clustering_id: int) -> list[dict[str, Any]]:
    """Per cluster (largest first): id, label, name, keywords, size and the gold-label mix.

    A last pseudo-entry with ``id`` None and ``noise`` True describes the noise rules (present
    even when there are none, so the app can always show the noise share).
    """
    get_clustering(ws, clustering_id)
    mix: dict[int | None, dict[str, int]] = {}
    for r in ws.query(
        "SELECT cm.cluster_id, e.label, count(*) AS n FROM cluster_members cm "
        "JOIN micro_instructions m ON m.id = cm.rule_id "
        "LEFT JOIN examples e ON e.id = m.example_id "
        "WHERE cm.clustering_id = ? GROUP BY cm.cluster_id, e.label ORDER BY e.label",
        [clustering_id],
    ):
        mix.setdefault(r["cluster_id"], {})[r["label"] if r["label"] is not None else "?"] = r["n"]
    out = []
    for c in ws.query(
        "SELECT * FROM clusters WHERE clustering_id = ? ORDER BY size DESC, id", [clustering_id]
    ):
        out.append({"id": c["id"], "label": c["label"], "name": c["name"],
                    "keywords": loads(c["keywords"], []), "size": c["size"],
                    "labels": mix.get(c["id"], {}), "noise": False})
    noise = mix.get(None, {})
    out.append({"id": None, "label": -1, "name": "noise", "keywords": [],
                "size": sum(noise.values()), "labels": noise, "noise": True})
    return out


_MEMBER_SQL = (
    "SELECT m.*, cm.cluster_id, cm.x, cm.y, e.label AS gold_label, e.text AS example_text "
    "FROM cluster_members cm JOIN micro_instructions m ON m.id = cm.rule_id "
    "LEFT JOIN examples e ON e.id = m.example_id WHERE cm.clustering_id = ?"
)


def members(ws: Workspace, clustering_id: int, cluster_id: int | None) -> list[dict[str, Any]]:
    """Rule rows of one cluster (``None``: the noise rules) with x/y, gold label, example text."""
    if cluster_id is None:
        return ws.query(_MEMBER_SQL + " AND cm.cluster_id IS NULL ORDER BY m.id", [clustering_id])
    return ws.query(_MEMBER_SQL + " AND cm.cluster_id = ? ORDER BY m.id",
                    [clustering_id, cluster_id])


def points(ws: Workspace, clustering_id: int) -> list[dict[str, Any]]:
    """Every member of a clustering (noise included) with x/y: the data of the app's map."""
    return ws.query(_MEMBER_SQL + " ORDER BY m.id", [clustering_id])


# ---------------------------------------------------------------------------------------------
# reviewer actions


def _review(db: Any, who: str, identity_kind: str, clustering_id: int, action: str,
            before: Any, after: Any) -> None:
    # The same chained audit row as heuristics get, identity kind included, so a clustering
    # sign-off says whether its reviewer logged in or typed a name.
    review.audit(db, who, identity_kind, "clustering", clustering_id, action, before, after,
                 None)


def accept_clustering(ws: Workspace, clustering_id: int, who: str, *,
                      identity_kind: str = SELF_DECLARED) -> None:
    """Accept a clustering for its task; a previously accepted one becomes ``superseded``.

    ``identity_kind`` (see :data:`pld.review.IDENTITY_KINDS`) is recorded with the sign-off.
    """
    who = review.check_actor(who, identity_kind)
    with ws.write() as db:
        c = get_clustering(ws, clustering_id)
        if not c["metrics"].get("n_clusters"):
            raise BadInput(f"clustering {clustering_id} has no clusters (all noise); "
                           "re-cluster with another eps or method")
        if c["status"] == ACCEPTED:
            return
        previous = ws.query("SELECT id FROM clusterings WHERE task = ? AND status = ?",
                            [c["task"], ACCEPTED])
        for p in previous:
            db["clusterings"].update(p["id"], {"status": SUPERSEDED})
        stamp = now()
        db["clusterings"].update(clustering_id, {"status": ACCEPTED, "accepted_by": who,
                                                 "accepted_at": stamp})
        _review(db, who, identity_kind, clustering_id, "accept", {"status": c["status"]},
                {"status": ACCEPTED, "superseded": [p["id"] for p in previous]})


def edit_refusal(ws: Workspace, clustering_id: int, *, structural: bool) -> str | None:
    """Why an edit of the clustering would be refused, or None when it is allowed.

    ``structural`` edits (move, merge, split) change which rules a heuristic was merged from,
    so they are refused once the clustering has heuristics; a rename is allowed until the
    clustering is superseded. The app shows this reason before the click.
    """
    c = get_clustering(ws, clustering_id)
    if c["status"] == SUPERSEDED:
        return f"clustering {clustering_id} is superseded; edit the current one"
    if structural and ws.query(
        "SELECT 1 FROM heuristics WHERE clustering_id = ? LIMIT 1", [clustering_id]
    ):
        return (f"clustering {clustering_id} already has heuristics; re-cluster instead of "
                "changing its clusters")
    return None


def _editable(ws: Workspace, clustering_id: int, structural: bool) -> dict[str, Any]:
    refusal = edit_refusal(ws, clustering_id, structural=structural)
    if refusal:
        raise BadInput(refusal)
    return get_clustering(ws, clustering_id)


def last_renames(ws: Workspace, clustering_id: int) -> dict[int, dict[str, Any]]:
    """Per cluster id, the trail row of its latest rename (who, identity_kind, created_at and
    the name before, as ``before_name``); clusters never renamed keep their automatic name and
    are absent."""
    out: dict[int, dict[str, Any]] = {}
    for r in ws.query(
        "SELECT id, who, identity_kind, created_at, json_extract(before, '$.name') AS before_name,"
        " json_extract(after, '$.cluster_id') AS cluster_id FROM reviews "
        "WHERE entity = 'clustering' AND entity_id = ? AND action = 'rename_cluster' "
        "ORDER BY id", [clustering_id]):
        out[int(r["cluster_id"])] = r
    return out


def _cluster_row(ws: Workspace, clustering_id: int, cluster_id: int) -> dict[str, Any]:
    rows = ws.query("SELECT * FROM clusters WHERE id = ? AND clustering_id = ?",
                    [cluster_id, clustering_id])
    if not rows:
        raise BadInput(f"cluster {cluster_id} is not in clustering {clustering_id}")
    row = rows[0]
    row["keywords"] = loads(row["keywords"], [])
    return row


def _member_ids(ws: Workspace, clustering_id: int, cluster_id: int) -> list[int]:
    return [r["rule_id"] for r in ws.query(
        "SELECT rule_id FROM cluster_members WHERE clustering_id = ? AND cluster_id = ? "
        "ORDER BY rule_id", [clustering_id, cluster_id])]


def _ctfidf_keywords(ws: Workspace, clustering_id: int) -> dict[int, list[str]]:
    """BERTopic's c-TF-IDF over the clustering's current clusters: keywords per cluster id."""
    from bertopic.vectorizers import ClassTfidfTransformer

    rows = ws.query(
        "SELECT cm.cluster_id, m.rule FROM cluster_members cm "
        "JOIN micro_instructions m ON m.id = cm.rule_id "
        "WHERE cm.clustering_id = ? AND cm.cluster_id IS NOT NULL ORDER BY cm.cluster_id, m.id",
        [clustering_id],
    )
    by_cluster: dict[int, list[str]] = {}
    for r in rows:
        by_cluster.setdefault(r["cluster_id"], []).append(r["rule"] or "")
    ids = sorted(by_cluster)
    if not ids:
        return {}
    vectorizer = _vectorizer()
    try:
        counts = vectorizer.fit_transform([" ".join(by_cluster[i]) for i in ids])
        weights = ClassTfidfTransformer().fit_transform(counts).toarray()
    except (ValueError, TypeError):
        # Empty or one-word vocabulary (see _fit_bertopic): no keywords to show.
        return {i: [] for i in ids}
    words = vectorizer.get_feature_names_out()
    out = {}
    for row, cid in zip(weights, ids, strict=True):
        order = np.argsort(-row, kind="stable")[:TOP_N_WORDS]
        out[cid] = [str(words[j]) for j in order if row[j] > 0]
    return out


def _refresh(ws: Workspace, db: Any, clustering_id: int, renamed: set[int]) -> None:
    """Recompute sizes, metrics and (for clusters in ``renamed``) keywords and auto names."""
    c = get_clustering(ws, clustering_id)
    db.execute(
        "UPDATE clusters SET size = (SELECT count(*) FROM cluster_members cm "
        "WHERE cm.clustering_id = clusters.clustering_id AND cm.cluster_id = clusters.id) "
        "WHERE clustering_id = ?", [clustering_id])
    if renamed:
        keywords = _ctfidf_keywords(ws, clustering_id)
        for cid in renamed:
            row = _cluster_row(ws, clustering_id, cid)
            words = keywords.get(cid, [])
            update = {"keywords": dumps(words)}
            # A name a reviewer typed is kept; a generated one follows the new keywords.
            if row["name"] == auto_name(row["keywords"], row["label"]) or not row["name"]:
                update["name"] = auto_name(words, row["label"])
            db["clusters"].update(cid, update)
    rows = ws.query("SELECT rule_id, cluster_id FROM cluster_members WHERE clustering_id = ? "
                    "ORDER BY rule_id", [clustering_id])
    vectors = load_vectors(ws, [r["rule_id"] for r in rows], c["embed_model"]).astype(np.float64)
    labels = np.array([-1 if r["cluster_id"] is None else r["cluster_id"] for r in rows])
    metrics = {**_metrics(vectors, labels), "edited": True}
    db["clusterings"].update(clustering_id, {"metrics": dumps(metrics)})


def _stale_rename(ws: Workspace, row: dict[str, Any], expected_name: str) -> StaleEdit:
    """The StaleEdit for renaming a cluster whose name is no longer ``expected_name``."""
    rows = ws.query(
        "SELECT * FROM reviews WHERE entity = 'clustering' AND entity_id = ? "
        "AND action = 'rename_cluster' AND json_extract(after, '$.cluster_id') = ? "
        "ORDER BY id DESC LIMIT 1", [row["clustering_id"], row["id"]])
    theirs = rows[0] if rows else None
    by = f" by {theirs['who']} at {theirs['created_at']}" if theirs else ""
    if theirs is not None:
        theirs["before"], theirs["after"] = loads(theirs["before"]), loads(theirs["after"])
    return StaleEdit(f"cluster {row['id']} is now named {row['name']!r}{by}, not "
                     f"{expected_name!r} as you saw it; nothing was changed: reload and rename "
                     "again if you still want to", row, theirs)


def rename_cluster(ws: Workspace, cluster_id: int, name: str, who: str, *,
                   expected_name: str | None = None,
                   identity_kind: str = SELF_DECLARED) -> None:
    """Give a cluster a reviewer-chosen name.

    ``expected_name`` is the name the reviewer saw: when someone renamed the cluster since,
    :class:`pld.review.StaleEdit` is raised and nothing changes (two tabs cannot silently
    overwrite each other's names).
    """
    who = review.check_actor(who, identity_kind)
    if not isinstance(name, str) or not name.strip():
        raise BadInput("a cluster name must not be empty")
    rows = ws.query("SELECT clustering_id FROM clusters WHERE id = ?", [cluster_id])
    if not rows:
        raise BadInput(f"cluster {cluster_id} not found")
    clustering_id = rows[0]["clustering_id"]
    with ws.write() as db:
        _editable(ws, clustering_id, structural=False)
        row = _cluster_row(ws, clustering_id, cluster_id)
        if expected_name is not None and row["name"] != expected_name:
            raise _stale_rename(ws, row, expected_name)
        db["clusters"].update(cluster_id, {"name": name.strip()})
        _review(db, who, identity_kind, clustering_id, "rename_cluster",
                {"cluster_id": cluster_id, "name": row["name"]},
                {"cluster_id": cluster_id, "name": name.strip()})


def move_rules(ws: Workspace, clustering_id: int, rule_ids: Sequence[int],
               to_cluster_id: int | None, who: str, *,
               identity_kind: str = SELF_DECLARED) -> int:
    """Move rules to another cluster of the same clustering (``None``: to noise), all or none.

    One transaction: an id that is not in the clustering refuses the whole move, so a typo in
    the last id never leaves the first ones moved. Each moved rule gets its audit row. Returns
    how many rules changed cluster (those already there are left alone).
    """
    who = review.check_actor(who, identity_kind)
    ids = list(dict.fromkeys(int(r) for r in rule_ids))
    if not ids:
        raise BadInput("choose at least one rule to move")
    with ws.write() as db:
        _editable(ws, clustering_id, structural=True)
        if to_cluster_id is not None:
            _cluster_row(ws, clustering_id, to_cluster_id)
        marks = ",".join("?" * len(ids))
        source = {r["rule_id"]: r["cluster_id"] for r in ws.query(
            f"SELECT rule_id, cluster_id FROM cluster_members WHERE clustering_id = ? "
            f"AND rule_id IN ({marks})", [clustering_id, *ids])}
        missing = [r for r in ids if r not in source]
        if missing:
            raise BadInput(f"rules not in clustering {clustering_id}: "
                           f"{', '.join(map(str, missing))}; nothing was moved")
        moving = [r for r in ids if source[r] != to_cluster_id]
        for rule_id in moving:
            db.execute("UPDATE cluster_members SET cluster_id = ? WHERE clustering_id = ? "
                       "AND rule_id = ?", [to_cluster_id, clustering_id, rule_id])
            _review(db, who, identity_kind, clustering_id, "move_rule",
                    {"rule_id": rule_id, "cluster_id": source[rule_id]},
                    {"rule_id": rule_id, "cluster_id": to_cluster_id})
        if moving:  # sizes and metrics once, not once per rule
            _refresh(ws, db, clustering_id, set())
    return len(moving)


def move_rule(ws: Workspace, clustering_id: int, rule_id: int, to_cluster_id: int | None,
              who: str, *, identity_kind: str = SELF_DECLARED) -> None:
    """Move one rule to another cluster of the same clustering (``None``: to noise)."""
    move_rules(ws, clustering_id, [rule_id], to_cluster_id, who, identity_kind=identity_kind)


def merge_clusters(ws: Workspace, clustering_id: int, a: int, b: int, who: str, *,
                   identity_kind: str = SELF_DECLARED) -> int:
    """Merge cluster ``b`` into ``a``; return ``a`` (``b`` is deleted). Keywords are recomputed."""
    who = review.check_actor(who, identity_kind)
    if a == b:
        raise BadInput(f"cannot merge cluster {a} with itself")
    with ws.write() as db:
        _editable(ws, clustering_id, structural=True)
        row_a = _cluster_row(ws, clustering_id, a)
        row_b = _cluster_row(ws, clustering_id, b)
        moved = _member_ids(ws, clustering_id, b)
        db.execute("UPDATE cluster_members SET cluster_id = ? WHERE clustering_id = ? "
                   "AND cluster_id = ?", [a, clustering_id, b])
        db.execute("DELETE FROM clusters WHERE id = ?", [b])
        _refresh(ws, db, clustering_id, {a})
        after = _cluster_row(ws, clustering_id, a)
        _review(db, who, identity_kind, clustering_id, "merge_clusters",
                {"a": _brief(row_a), "b": {**_brief(row_b), "rule_ids": moved}},
                {"cluster": _brief(after)})
    return a


def split_cluster(ws: Workspace, clustering_id: int, cluster_id: int, k: int = 2, *,
                  who: str, identity_kind: str = SELF_DECLARED) -> list[int]:
    """Split a cluster in ``k`` with k-means on its stored vectors; return the ids of the parts.

    The largest part keeps ``cluster_id``; the others become new clusters. Keywords of all parts
    are recomputed with c-TF-IDF.
    """
    who = review.check_actor(who, identity_kind)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise BadInput(f"split needs k >= 2, got {k!r}")
    with ws.write() as db:
        c = _editable(ws, clustering_id, structural=True)
        row = _cluster_row(ws, clustering_id, cluster_id)
        ids = _member_ids(ws, clustering_id, cluster_id)
        if k > len(ids):
            raise BadInput(f"cluster {cluster_id} has {len(ids)} rules; cannot split in {k}")
        from sklearn.cluster import KMeans

        vectors = load_vectors(ws, ids, c["embed_model"]).astype(np.float64)
        seed = int(c["params"].get("seed", 0))
        parts, _ = _relabel_by_size(
            KMeans(n_clusters=k, random_state=seed, n_init=KMEANS_RESTARTS).fit_predict(vectors))
        next_label = int(ws.query("SELECT max(label) AS m FROM clusters WHERE clustering_id = ?",
                                  [clustering_id])[0]["m"]) + 1
        part_ids = [cluster_id]
        for part in range(1, int(parts.max()) + 1):
            label = next_label + part - 1
            new_id = int(db["clusters"].insert({
                "clustering_id": clustering_id, "label": label, "name": f"cluster {label}",
                "keywords": dumps([]), "size": 0,
            }).last_pk)
            part_ids.append(new_id)
            chunk = [rid for rid, p in zip(ids, parts, strict=True) if p == part]
            marks = ",".join("?" * len(chunk))
            db.execute(f"UPDATE cluster_members SET cluster_id = ? WHERE clustering_id = ? "
                       f"AND rule_id IN ({marks})", [new_id, clustering_id, *chunk])
        _refresh(ws, db, clustering_id, set(part_ids))
        after = []
        for pid in part_ids:
            after.append({**_brief(_cluster_row(ws, clustering_id, pid)),
                          "rule_ids": _member_ids(ws, clustering_id, pid)})
        _review(db, who, identity_kind, clustering_id, "split_cluster",
                {"cluster": {**_brief(row), "rule_ids": ids}, "k": k}, {"clusters": after})
    return part_ids


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {"cluster_id": row["id"], "name": row["name"], "keywords": row["keywords"],
            "size": row["size"]}
