"""Stage 2b: cluster the embedded rules and store the result as a proposed clustering.

Clustering runs through BERTopic on the stored embeddings (never re-embedding): the clusterer is
DBSCAN (the paper: cosine, eps=0.4, min_samples=6), HDBSCAN or k-means, passed as BERTopic's
``hdbscan_model``. By default no dimensionality reduction happens (BERTopic gets an identity
``umap_model``), so DBSCAN's cosine ``eps`` means what it means in the paper; ``umap=True``
reduces to 5 dimensions first (then distances are Euclidean in UMAP space). BERTopic's c-TF-IDF
keywords name each cluster for reviewers.

The default method, ``auto``, tries several clusterings and keeps one in which no cluster holds
more than 60% of the rules (:mod:`~pld.pipeline.cluster.choose`): one cluster of most rules
consolidates into one heuristic that restates the task. The candidates, their numbers and why the
kept one won are stored in the params (``auto``). An explicit method is a person's choice (or a
command's): it is kept as asked even when one cluster holds most rules, and the params say who
chose it (``choice``, ``chosen_by``).

The paper's eps is calibrated to Gemini embeddings; ``eps="auto"`` picks it from the k-distance
curve of the actual embeddings (:func:`~pld.pipeline.cluster.fit.eps_auto`). Noise rules are kept
as members with a NULL ``cluster_id`` so reviewers can see and move them;
``cluster(..., cover=True)`` gives each label whose rules all fell into noise one cluster of them
(:func:`~pld.pipeline.cluster.fit.cover_labels`), so no label is left without a heuristic.
Every clustering is one ``clusterings`` row (params + metrics) with status ``proposed``; a
reviewer accepts one per task.

Here are the stage's options check, the run and the rows it writes. The maths is in
:mod:`~pld.pipeline.cluster.fit`, reading clusterings back in :mod:`~pld.pipeline.cluster.read`,
and reviewer edits (accept, rename, move, merge, split) in :mod:`~pld.pipeline.cluster.edits`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pld.errors import BadInput, NotReady
from pld.identity import Identity
from pld.pipeline.cluster.choose import MAX_SHARE, choose
from pld.pipeline.cluster.fit import (
    AUTO,
    METHODS,
    UMAP_MIN_RULES,
    GivenLabels,
    auto_name,
    class_keywords,
    clustering_metrics,
    cover_labels,
    eps_auto,
    fit_bertopic,
    make_clusterer,
    project,
    reduce_dims,
)
from pld.pipeline.cluster.read import PROPOSED, rule_texts
from pld.pipeline.embed import DEFAULT_EMBEDDER, check_embedder_name, embed_rules, load_vectors
from pld.pipeline.runs import ProgressCallback, stage_run
from pld.tasks.store import task_info
from pld.workspace import Workspace, dumps, now

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
    if method == AUTO and k is not None:
        raise BadInput("--k goes with --method kmeans (auto chooses its own k)")
    if method == "kmeans":
        if k is None:
            raise BadInput("--method kmeans needs --k (the number of clusters)")
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise BadInput(f"--k must be an integer >= 2, got {k!r}")
    return parsed


def _choice(method: str, started_by: Identity | None) -> dict[str, Any]:
    """Who chose the clustering's method: ``auto``, or a person's (or a command's) explicit
    choice, kept even when one cluster holds most rules."""
    if method == AUTO:
        return {"choice": AUTO}
    who = None if started_by is None else {"name": started_by.name, "kind": started_by.kind}
    return {"choice": "explicit", "chosen_by": who}


def cluster(
    ws: Workspace,
    task: str,
    *,
    method: str = AUTO,
    eps: float | str = 0.4,
    min_samples: int = 6,
    k: int | None = None,
    embed_model: str = DEFAULT_EMBEDDER,
    umap: bool = False,
    seed: int = 0,
    cover: bool = False,
    started_by: Identity | None = None,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Cluster the task's ok rules and store a ``proposed`` clustering; return its id.

    Embeds missing rules first (:func:`embed_rules`), then clusters the stored vectors.
    ``method`` ``auto`` chooses among several clusterings (:func:`choose`; ``min_samples`` goes
    to its density candidates); any other method is kept as asked, recorded as chosen by
    ``started_by``. ``eps`` (DBSCAN only) is a cosine distance in (0, 2], or ``"auto"`` to pick
    it with :func:`eps_auto`. ``cover`` adds a cluster for each label left wholly in noise
    (:func:`cover_labels`). Raises :class:`BadInput` for bad options and :class:`NotReady` when the
    task has no ok rules.
    """
    parsed_eps = _validate(method, eps, min_samples, k, umap)
    check_embedder_name(embed_model)
    task_info(ws, task)
    rules = ws.query(
        "SELECT m.id, m.rule, COALESCE(m.label, e.label, '?') AS label FROM micro_instructions m "
        "LEFT JOIN examples e ON e.id = m.example_id WHERE m.task = ? AND m.status = 'ok' "
        "ORDER BY m.id",
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
                              "seed": seed, "metric": metric if method != "kmeans" else None,
                              **_choice(method, started_by)}
    if method in ("dbscan", "hdbscan", AUTO):
        params["min_samples"] = min_samples
    if method == "kmeans":
        params["k"] = k
    if cover:
        params["cover_labels"] = True
    run_params = {**params, "eps": eps} if method == "dbscan" else dict(params)
    with stage_run(ws, task, "cluster", run_params, on_progress=on_progress,
                   started_by=started_by) as run:
        run.set_total(4)
        ids = [int(r["id"]) for r in rules]
        docs = [r["rule"] or "" for r in rules]
        vectors = load_vectors(ws, ids, embed_model).astype(np.float64)
        space = reduce_dims(vectors, seed) if umap else vectors
        run.advance()
        eps_value: float | None = None
        if method == "dbscan":
            if isinstance(parsed_eps, float):
                eps_value = parsed_eps
                params.update(eps=eps_value, eps_method="given")
            else:
                eps_value, info = eps_auto(space, min_samples, metric)
                params.update(eps=eps_value, eps_method="auto", eps_auto=info)
        if method == AUTO:
            chosen, params[AUTO] = choose(space, [r["label"] for r in rules],
                                          min_samples=min_samples, seed=seed, metric=metric)
            clusterer: Any = GivenLabels(chosen)
        else:
            clusterer = make_clusterer(method, eps_value or 0.0, min_samples, k, seed, metric)
        labels, keywords, note = fit_bertopic(docs, space, clusterer)
        if note:
            params["representation_note"] = note
        added: dict[int, str] = {}
        if cover:
            labels, added = cover_labels(labels, [r["label"] for r in rules])
            params["label_clusters"] = sorted(added.values())
        run.advance()
        xy, projection = project(vectors, umap, seed)
        params["projection"] = projection
        metrics = clustering_metrics(vectors, labels)
        if method != AUTO and metrics["largest_share"] > MAX_SHARE:
            params["over_max_share"] = (
                f"one cluster holds {metrics['largest_share']:.0%} of the rules (auto keeps "
                f"each at or below {MAX_SHARE:.0%}): kept because {method} was chosen "
                "explicitly")
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
    keywords = class_keywords(rule_texts(ws, clustering_id))
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
