"""Reading clusterings back: one clustering, a task's clusterings, the current one, each
cluster's size and gold-label mix, the member rules with their map coordinates, and who or what
chose the clustering's method (:func:`choice_words`).

A clustering is ``proposed`` when stored, ``accepted`` when a reviewer signs it off for its
task, ``superseded`` when another one is accepted after it.
"""

from __future__ import annotations

from typing import Any

from pld.errors import BadInput
from pld.workspace import Workspace, loads

PROPOSED, ACCEPTED, SUPERSEDED = "proposed", "accepted", "superseded"


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


def rule_texts(ws: Workspace, clustering_id: int) -> dict[int, list[str]]:
    """Per cluster id (noise left out), the texts of its member rules: c-TF-IDF's input."""
    out: dict[int, list[str]] = {}
    for r in ws.query(
        "SELECT cm.cluster_id, m.rule FROM cluster_members cm "
        "JOIN micro_instructions m ON m.id = cm.rule_id "
        "WHERE cm.clustering_id = ? AND cm.cluster_id IS NOT NULL ORDER BY cm.cluster_id, m.id",
        [clustering_id],
    ):
        out.setdefault(r["cluster_id"], []).append(r["rule"] or "")
    return out


def largest_share(metrics: dict[str, Any]) -> float | None:
    """The share of all rules in the largest cluster (also for clusterings stored before the
    metrics held it); None without rules."""
    if metrics.get("largest_share") is not None:
        return float(metrics["largest_share"])
    sizes, n = metrics.get("sizes") or [], metrics.get("n_rules") or 0
    return (max(sizes) if sizes else 0) / n if n else None


def choice_words(params: dict[str, Any]) -> str:
    """How the clustering's method was chosen, in a sentence: what ``auto`` kept and why, or
    who chose an explicit method (and that it keeps more than 60% of the rules in one cluster
    when it does)."""
    auto = params.get("auto")
    if auto:
        return (f"auto kept {auto['chosen']} of {len(auto.get('candidates') or [])} "
                f"clusterings tried: {auto['why']}.")
    if params.get("choice") != "explicit":
        return "chosen before auto existed (no record of who chose it)."
    who = params.get("chosen_by")
    by = f"{who['name']} ({who['kind']})" if who else "the command line"
    words = f"{params.get('method')} chosen explicitly by {by}."
    over = params.get("over_max_share")
    return f"{words} {over[0].upper()}{over[1:]}." if over else words


def candidate_words(candidate: dict[str, Any]) -> str:
    """One clustering ``auto`` tried, with its numbers and why it won or lost."""
    sil = candidate.get("silhouette")
    return (f"{candidate['name']}: {candidate['n_clusters']} clusters, largest "
            f"{candidate['largest_share']:.0%}, noise {candidate['noise_share']:.0%}, silhouette "
            f"{'-' if sil is None else f'{sil:.3f}'} ({candidate['why']})")
