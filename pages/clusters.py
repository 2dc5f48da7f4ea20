"""Clusters: cluster the rules in the background, inspect the result, edit it, accept it.

Clustering is ``python -m pld cluster`` started through :mod:`pld.jobs` (embedding the rules the
first time can take a while). Every clustering is kept as ``proposed`` with its cluster count
and noise share, so a reviewer can compare settings before accepting one. Edits (rename, move
rules, merge, split) go through :mod:`pld.pipeline.cluster.edits` under the reviewer's name,
which records each in the audit trail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from pld.errors import BadInput
from pld.identity import Identity
from pld.pipeline.cluster import edits, fit, read
from pld.pipeline.extract.browse import count_rules
from pld.ui.acting import act, reviewer_or_warning
from pld.ui.clustering_choice import choice_panel
from pld.ui.escape import hover, literal, say, tip
from pld.ui.launcher import Launch, job_section, start_controls
from pld.ui.page import follow_value, labelled_selectbox, task_page
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace

NOISE_LABEL = "noise"
NOISE_ID = -1  # the noise "cluster" in selectboxes (clusters.id is positive; None means unset)


# -- actions (button callbacks: they run before the page is drawn) --------------------------------

def _args(task: str) -> list[str]:
    """The cluster command the section's settings stand for."""
    method = st.session_state.get("c_method", fit.AUTO)
    args = ["cluster", task, "--method", method]
    if method == "dbscan":
        eps = "auto" if st.session_state.get("c_eps_auto") else \
            f"{float(st.session_state.get('c_eps') or 0.4):g}"
        args += ["--eps", eps]
    if method in ("dbscan", "hdbscan", fit.AUTO):
        args += ["--min-samples", str(int(st.session_state.get("c_min_samples") or 6))]
    if method == "kmeans":
        args += ["--k", str(int(st.session_state.get("c_k") or 2))]
    if st.session_state.get("c_umap"):
        args.append("--umap")
    if method != "kmeans" and st.session_state.get("c_cover"):
        args.append("--cover-labels")
    return args


def _accept(ws: Workspace, clustering_id: int) -> None:
    def run(who: Identity) -> str:
        edits.accept_clustering(ws, clustering_id, who)
        return f"Clustering #{clustering_id} accepted by {who.name} ({who.kind})."

    act("accept", run)


def _rename(ws: Workspace, cluster_id: int, seen_name: str) -> None:
    name = (st.session_state.get(f"c_name_{cluster_id}") or "").strip()

    def run(who: Identity) -> str:
        # seen_name is the name on the page the reviewer edited: a rename by someone else
        # since then is refused (StaleEdit) rather than overwritten.
        edits.rename_cluster(ws, cluster_id, name, who, expected_name=seen_name)
        return f"Cluster {cluster_id} renamed to {name!r}."

    act("rename", run)


def _move(ws: Workspace, clustering_id: int) -> None:
    rule_ids = [int(r) for r in st.session_state.get("c_move_rules") or []]
    chosen = st.session_state.get("c_move_to")
    target = None if chosen in (None, NOISE_ID) else int(chosen)

    def run(who: Identity) -> str:
        if chosen is None:
            raise BadInput("choose where to move the rules")
        edits.move_rules(ws, clustering_id, rule_ids, target, who)
        where = NOISE_LABEL if target is None else f"cluster {target}"
        return f"Moved {len(rule_ids)} rule(s) to {where}."

    act("move rules", run)
    st.session_state["c_move_rules"] = []


def _merge(ws: Workspace, clustering_id: int, a: int) -> None:
    b = st.session_state.get("c_merge_with")

    def run(who: Identity) -> str:
        if b is None:
            raise BadInput("choose the cluster to merge into this one")
        edits.merge_clusters(ws, clustering_id, a, int(b), who)
        return f"Merged cluster {b} into cluster {a}."

    act("merge", run)


def _split(ws: Workspace, clustering_id: int, cluster_id: int) -> None:
    k = int(st.session_state.get("c_split_k") or 2)

    def run(who: Identity) -> str:
        parts = edits.split_cluster(ws, clustering_id, cluster_id, k, who=who)
        return f"Split cluster {cluster_id} into clusters {', '.join(map(str, parts))}."

    act("split", run)


# -- drawing --------------------------------------------------------------------------------------

def _run_section(ws: Workspace, task: str, n_ok: int, expanded: bool) -> None:
    with job_section(ws, task, "cluster", "Cluster the rules", expanded=expanded):
        st.write("Rules are embedded once (stored per embedding model), then clustered. Method "
                 "**auto** tries k-means over a range of k, one cluster per label (split "
                 "further), HDBSCAN and DBSCAN, and keeps the best-separated clustering in which "
                 "no cluster holds more than 60% of the rules. An explicit method is kept as "
                 "you choose it, and recorded as your choice.")
        c1, c2, c3, c4 = st.columns(4)
        method = c1.selectbox("Method", list(fit.METHODS), key="c_method")
        if method == "dbscan":
            auto = c2.checkbox("eps auto", value=True, key="c_eps_auto",
                               help="Pick eps at the knee of the k-distance curve.")
            c2.number_input("eps (cosine distance)", min_value=0.01, max_value=2.0, value=0.4,
                            step=0.05, key="c_eps", disabled=auto)
        if method in ("dbscan", "hdbscan", fit.AUTO):
            c3.number_input("min samples", min_value=1, max_value=100, value=6,
                            key="c_min_samples")
        if method == "kmeans":
            most = max(2, n_ok)
            # sqrt(n/2), as `run` falls back to; never above the number of rules (a new task
            # may have only a handful).
            k = min(most, max(2, round(math.sqrt(n_ok / 2))))
            if st.session_state.get("c_k", 0) > most:  # rules were removed since
                del st.session_state["c_k"]
            c3.number_input("k (clusters)", min_value=2, max_value=most, value=k, key="c_k")
        c4.checkbox("UMAP first", key="c_umap", help="Reduce to 5 dimensions before clustering "
                                                      "(needs at least 10 rules).")
        if method != "kmeans":
            c4.checkbox("Keep labels lost in noise", key="c_cover",
                        help="A label whose rules all fall into noise gets one cluster of them, "
                             "so it still gets a heuristic.")
        start_controls(
            ws, task, Launch("cluster", "Start clustering", key="c_start", prefix="c",
                             started="Clustering started", command=lambda: _args(task),
                             help="Runs `python -m pld cluster` in the background."),
            problem=None if n_ok else
            "No extracted rules yet: run extraction on the Micro-instructions page.")


def _describe(c: dict[str, Any]) -> str:
    m, auto = c["metrics"], c["params"].get(fit.AUTO)
    method = c["method"] + (f" → {auto['chosen']}" if auto else "")
    share = read.largest_share(m)
    largest = "" if share is None else f" · largest {100 * share:.0f}%"
    return (f"#{c['id']} · {method} · {m.get('n_clusters', 0)} clusters · noise "
            f"{100 * (m.get('noise_share') or 0):.0f}%{largest} · {c['status']}")


def _settings(c: dict[str, Any]) -> str:
    p = c["params"]
    bits = [f"embedder {literal(c['embed_model'])}"]
    if "eps" in p:
        how = " (auto)" if p.get("eps_method") == "auto" else ""
        bits.append(f"eps {p['eps']:.3g}{how}")
    for key in ("min_samples", "k"):
        if p.get(key) is not None:
            bits.append(f"{key.replace('_', ' ')} {p[key]}")
    if p.get("umap"):
        bits.append("UMAP")
    if p.get("label_clusters"):
        bits.append("kept from noise: " + ", ".join(map(literal, p["label_clusters"])))
    return " · ".join(bits)


def _overview(ws: Workspace, c: dict[str, Any]) -> None:
    m = c["metrics"]
    cols = st.columns(5)
    cols[0].metric("Clusters", m.get("n_clusters", 0))
    cols[1].metric("Noise share", f"{100 * (m.get('noise_share') or 0):.1f}%",
                   help=f"{m.get('n_noise', 0)} rules in no cluster; noise is left out of "
                        "consolidation.")
    sil = m.get("silhouette")
    cols[2].metric("Silhouette", "–" if sil is None else f"{sil:.2f}",
                   help="Cosine silhouette of the clustered rules (-1..1; higher is better).")
    cols[3].metric("Rules", m.get("n_rules", 0))
    share = read.largest_share(m)
    cols[4].metric("Largest cluster", "–" if share is None else f"{100 * share:.0f}%",
                   help="The share of all rules in the largest cluster.")
    st.caption(_settings(c) + (" · edited by reviewers" if m.get("edited") else ""))
    choice_panel(c)
    if c["status"] == read.PROPOSED:
        st.button("Accept this clustering", key="c_accept", type="primary", on_click=_accept,
                  args=(ws, c["id"]),
                  help="Consolidation uses the accepted clustering of the task.")
        reviewer_or_warning("accept or edit a clustering")
    elif c["status"] == read.ACCEPTED:
        say("success", f"Accepted by {c['accepted_by']} at {c['accepted_at']}.")
    else:
        st.caption("Superseded by a clustering accepted later; kept for comparison.")


def _option(entry: dict[str, Any]) -> int:
    return NOISE_ID if entry["noise"] else int(entry["id"])


def _names(summary: list[dict[str, Any]]) -> dict[int, str]:
    return {_option(s): (NOISE_LABEL if s["noise"] else f"{s['id']}: {s['name']}")
            for s in summary}


def _scatter(ws: Workspace, clustering_id: int, names: dict[int, str]) -> None:
    pts = read.points(ws, clustering_id)
    if not pts:
        return
    df = pd.DataFrame([{
        "x": p["x"], "y": p["y"],
        # Rule text, labels and cluster names become Plotly hover/legend HTML: escaped.
        "cluster": hover(names[NOISE_ID if p["cluster_id"] is None else p["cluster_id"]]),
        "rule": hover(p["rule"]), "gold label": hover(p["gold_label"]), "rule id": p["id"],
    } for p in pts])
    order = [hover(n) for n in names.values() if n != NOISE_LABEL] + [NOISE_LABEL]
    fig = px.scatter(df, x="x", y="y", color="cluster", category_orders={"cluster": order},
                     hover_data={"rule": True, "gold label": True, "rule id": True,
                                 "x": False, "y": False},
                     color_discrete_map={NOISE_LABEL: "#b0b0b0"},
                     title="Rule embeddings (2-D projection), coloured by cluster")
    fig.update_traces(marker={"size": 7, "opacity": 0.8})
    fig.update_layout(height=480, legend_title_text="cluster", margin={"t": 40, "b": 10})
    st.plotly_chart(fig, key="c_scatter")


def _named_by(rename: dict[str, Any] | None) -> str:
    if rename is None:
        return "automatic (keywords)"
    return f"{rename['who']} ({rename['identity_kind']}), {rename['created_at'][:16]}"


def _summary_table(summary: list[dict[str, Any]], renames: dict[int, dict[str, Any]]) -> None:
    untrusted_table(pd.DataFrame([{
        "cluster": NOISE_LABEL if s["noise"] else str(s["id"]), "name": s["name"],
        "named by": "" if s["noise"] else _named_by(renames.get(s["id"])),
        "size": s["size"],
        "keywords": ", ".join(s["keywords"]),
        "label mix": ", ".join(f"{k} {v}" for k, v in s["labels"].items()),
    } for s in summary]), "clusters.csv", key="c_summary")


def _keep_valid(key: str, options: list[Any]) -> None:
    # Clusters come and go (merge, split, another clustering): drop a choice that is gone.
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def _rule_option(rows: list[dict[str, Any]]) -> Callable[[int], str]:
    by_id = {r["id"]: r for r in rows}

    def label(i: int) -> str:
        r = by_id[i]
        text = " ".join(str(r["rule"] or "").split())
        return f"#{i} · {r['gold_label']} · {text[:70]}{'…' if len(text) > 70 else ''}"

    return label


def _edit_controls_off(ws: Workspace, clustering_id: int) -> str | None:
    """Why move/merge/split cannot act on this clustering, shown before anyone clicks."""
    refusal = edits.edit_refusal(ws, clustering_id, structural=True)
    if refusal:
        say("caption", f"Move, merge and split are off: {refusal}. Renaming still works.")
    return refusal


def _cluster_detail(ws: Workspace, c: dict[str, Any], summary: list[dict[str, Any]],
                    names: dict[int, str], renames: dict[int, dict[str, Any]]) -> None:
    sizes = {_option(s): s["size"] for s in summary}
    options = list(sizes)
    _keep_valid("c_cluster", options)

    def cluster_label(i: int) -> str:
        return f"{names[i]} ({sizes[i]} rules)"

    cid = labelled_selectbox("Cluster", options, key="c_cluster", format_func=cluster_label)
    entry = next(s for s in summary if _option(s) == cid)
    if entry["keywords"]:
        st.caption("Keywords (c-TF-IDF): " + ", ".join(map(literal, entry["keywords"])))
    if cid != NOISE_ID:
        rename = renames.get(cid)
        say("caption", "Named automatically from its keywords." if rename is None else
            f"Named by {_named_by(rename)}; it was {rename['before_name']!r}.")
    rows = read.members(ws, c["id"], None if cid == NOISE_ID else cid)
    untrusted_table(pd.DataFrame([{"rule id": r["id"], "gold label": r["gold_label"],
                                   "rule": r["rule"]} for r in rows]),
                    f"cluster-{cid}-rules.csv", key="c_members",
                    column_config={"rule": st.column_config.TextColumn(width="large")})
    if c["status"] == read.SUPERSEDED:
        return
    st.markdown("##### Edit")
    others = [o for o in options if o != cid]
    if cid != NOISE_ID:
        c1, c2 = st.columns([3, 1])
        # A rename saved elsewhere shows here; a stale name would be sent back otherwise.
        follow_value(f"c_name_{cid}", entry["name"])
        c1.text_input("New name", key=f"c_name_{cid}")
        c2.button("Rename", key="c_rename", on_click=_rename, args=(ws, cid, entry["name"]))
    off = _edit_controls_off(ws, c["id"])
    _keep_valid("c_move_to", others)
    c1, c2, c3 = st.columns([3, 2, 1])
    c1.multiselect("Rules to move", [r["id"] for r in rows], key="c_move_rules",
                   format_func=_rule_option(rows), select_all=False, disabled=bool(off),
                   placeholder="Type an id or words of the rule")
    labelled_selectbox("Move to", others, key="c_move_to", format_func=names.__getitem__,
                       where=c2, disabled=bool(off))
    c3.button("Move", key="c_move", on_click=_move, args=(ws, c["id"]), disabled=bool(off),
              help=tip(off) or "Send rules to another cluster, to noise, or back from noise.")
    if cid == NOISE_ID:
        return
    merge_targets = [o for o in others if o != NOISE_ID]
    _keep_valid("c_merge_with", merge_targets)
    c1, c2 = st.columns([3, 1])
    labelled_selectbox("Merge into this cluster", merge_targets, key="c_merge_with",
                       format_func=names.__getitem__, where=c1, disabled=bool(off))
    c2.button("Merge", key="c_merge", on_click=_merge, args=(ws, c["id"], cid),
              disabled=bool(off) or not merge_targets,
              help=tip(off) or (None if merge_targets else "There is no other cluster."))
    c1, c2 = st.columns([3, 1])
    c1.number_input("Split into k parts", min_value=2, max_value=max(2, entry["size"]), value=2,
                    key="c_split_k", disabled=bool(off))
    c2.button("Split", key="c_split", on_click=_split, args=(ws, c["id"], cid),
              disabled=bool(off) or entry["size"] < 2,
              help=tip(off) or ("A cluster of one rule cannot be split." if entry["size"] < 2
                                else None))


def main() -> None:
    """Draw the page."""
    ws, task = task_page("Clusters")
    clusterings = read.list_clusterings(ws, task)
    n_ok = count_rules(ws, task, status="ok")
    _run_section(ws, task, n_ok, expanded=not clusterings)
    if not clusterings:
        st.info("No clustering yet." + ("" if n_ok else " Extract micro-instructions first."))
        return
    by_id = {c["id"]: c for c in clusterings}
    if st.session_state.get("c_clustering") not in by_id:
        current = read.current_clustering(ws, task)
        st.session_state["c_clustering"] = current["id"] if current else clusterings[0]["id"]
    chosen = labelled_selectbox("Clustering", list(by_id), key="c_clustering",
                                format_func=lambda i: _describe(by_id[i]))
    c = by_id[chosen]
    _overview(ws, c)
    summary = read.cluster_summary(ws, c["id"])
    names = _names(summary)
    renames = edits.last_renames(ws, c["id"])
    _scatter(ws, c["id"], names)
    st.subheader("Clusters")
    _summary_table(summary, renames)
    _cluster_detail(ws, c, summary, names, renames)


main()
