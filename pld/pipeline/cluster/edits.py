"""Reviewer edits of a clustering, each with its audit row in ``reviews``: accept one
clustering per task, rename a cluster, move rules, merge two clusters, split one.

Every edit keeps ``clusters.size`` and the clustering's metrics consistent. Structural edits
(move, merge, split) are refused once heuristics were merged from the clustering, and every edit
once it is superseded (:func:`edit_refusal`). A rename names the name the reviewer saw, so two
tabs cannot silently overwrite each other's names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pld import review_rows
from pld.errors import BadInput
from pld.identity import Identity
from pld.pipeline.cluster.fit import (
    KMEANS_RESTARTS,
    auto_name,
    class_keywords,
    clustering_metrics,
    relabel_by_size,
)
from pld.pipeline.cluster.read import ACCEPTED, SUPERSEDED, get_clustering, rule_texts
from pld.pipeline.embed import load_vectors
from pld.review_rows import StaleEdit
from pld.workspace import Workspace, dumps, loads, now


def _review(db: Any, who: Identity, clustering_id: int, action: str, before: Any,
            after: Any) -> None:
    # The same chained audit row as heuristics get, identity kind included, so a clustering
    # sign-off says whether its reviewer logged in or typed a name.
    review_rows.audit(db, who, "clustering", clustering_id, action, before, after, None)


def accept_clustering(ws: Workspace, clustering_id: int, who: Identity) -> None:
    """Accept a clustering for its task as ``who`` (the kind of identity is recorded with the
    sign-off); a previously accepted one becomes ``superseded``."""
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
        db["clusterings"].update(clustering_id, {"status": ACCEPTED, "accepted_by": who.name,
                                                 "accepted_at": stamp})
        _review(db, who, clustering_id, "accept", {"status": c["status"]},
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


def _refresh(ws: Workspace, db: Any, clustering_id: int, renamed: set[int]) -> None:
    """Recompute sizes, metrics and (for clusters in ``renamed``) keywords and auto names."""
    c = get_clustering(ws, clustering_id)
    db.execute(
        "UPDATE clusters SET size = (SELECT count(*) FROM cluster_members cm "
        "WHERE cm.clustering_id = clusters.clustering_id AND cm.cluster_id = clusters.id) "
        "WHERE clustering_id = ?", [clustering_id])
    if renamed:
        keywords = class_keywords(rule_texts(ws, clustering_id))
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
    metrics = {**clustering_metrics(vectors, labels), "edited": True}
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


def rename_cluster(ws: Workspace, cluster_id: int, name: str, who: Identity, *,
                   expected_name: str | None = None) -> None:
    """Give a cluster a reviewer-chosen name.

    ``expected_name`` is the name the reviewer saw: when someone renamed the cluster since,
    :class:`pld.review_rows.StaleEdit` is raised and nothing changes (two tabs cannot silently
    overwrite each other's names).
    """
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
        _review(db, who, clustering_id, "rename_cluster",
                {"cluster_id": cluster_id, "name": row["name"]},
                {"cluster_id": cluster_id, "name": name.strip()})


def move_rules(ws: Workspace, clustering_id: int, rule_ids: Sequence[int],
               to_cluster_id: int | None, who: Identity) -> int:
    """Move rules to another cluster of the same clustering (``None``: to noise), all or none.

    One transaction: an id that is not in the clustering refuses the whole move, so a typo in
    the last id never leaves the first ones moved. Each moved rule gets its audit row. Returns
    how many rules changed cluster (those already there are left alone).
    """
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
            _review(db, who, clustering_id, "move_rule",
                    {"rule_id": rule_id, "cluster_id": source[rule_id]},
                    {"rule_id": rule_id, "cluster_id": to_cluster_id})
        if moving:  # sizes and metrics once, not once per rule
            _refresh(ws, db, clustering_id, set())
    return len(moving)


def move_rule(ws: Workspace, clustering_id: int, rule_id: int, to_cluster_id: int | None,
              who: Identity) -> None:
    """Move one rule to another cluster of the same clustering (``None``: to noise)."""
    move_rules(ws, clustering_id, [rule_id], to_cluster_id, who)


def merge_clusters(ws: Workspace, clustering_id: int, a: int, b: int, who: Identity) -> int:
    """Merge cluster ``b`` into ``a``; return ``a`` (``b`` is deleted). Keywords are recomputed."""
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
        _review(db, who, clustering_id, "merge_clusters",
                {"a": _brief(row_a), "b": {**_brief(row_b), "rule_ids": moved}},
                {"cluster": _brief(after)})
    return a


def split_cluster(ws: Workspace, clustering_id: int, cluster_id: int, k: int = 2, *,
                  who: Identity) -> list[int]:
    """Split a cluster in ``k`` with k-means on its stored vectors; return the ids of the parts.

    The largest part keeps ``cluster_id``; the others become new clusters. Keywords of all parts
    are recomputed with c-TF-IDF.
    """
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
        parts, _ = relabel_by_size(
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
        _review(db, who, clustering_id, "split_cluster",
                {"cluster": {**_brief(row), "rule_ids": ids}, "k": k}, {"clusters": after})
    return part_ids


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {"cluster_id": row["id"], "name": row["name"], "keywords": row["keywords"],
            "size": row["size"]}
