"""Micro-instructions: run extraction in the background and browse the rules it wrote.

Extraction is ``python -m pld extract`` started through :mod:`pld.jobs`: its progress comes from
the workspace, so it survives a reload and shows in every tab. Verifying the rules with the
student (``python -m pld rules verify``) is a job the same way; each rule shows the examples it
came from side by side and its evidence (:mod:`pld.ui.rule_evidence_view`). The rules table
pages and filters in SQL (:func:`pld.pipeline.extract.browse.list_rules` with LIMIT/OFFSET):
only one page of rows is ever fetched, however many rules the task has.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from pld.number_format import seconds_text
from pld.pipeline.cluster.read import cluster_summary, current_clustering
from pld.pipeline.extract.browse import ClusterFilter, count_rules, get_rule, list_rules
from pld.pipeline.extract.flags import FLAGS
from pld.pipeline.rule_evidence import rule_effects
from pld.tasks.store import task_info
from pld.ui import sidebar
from pld.ui.escape import literal, say
from pld.ui.launcher import Launch, job_section, start_controls
from pld.ui.page import labelled_selectbox, task_page
from pld.ui.rule_evidence_view import (
    evidence_panel,
    example_pair,
    restatement_note,
    verify_section,
)
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace

ALL = "(all)"
ANY_FLAG, NO_FLAG = "any flag", "no flag"
NOISE = "noise"
PAGE_SIZES = (25, 50, 100)


def _args(task: str, teacher: str, student: str) -> list[str]:
    """The extract command the page's settings stand for."""
    args = ["extract", task, "--teacher", teacher]
    limit = int(st.session_state.get("x_limit") or 0)
    concurrency = int(st.session_state.get("x_concurrency") or 0)
    if limit:
        args += ["--limit", str(limit)]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    if not st.session_state.get("x_contrastive", True):
        args.append("--no-contrastive")
    if st.session_state.get("x_where_student_fails"):
        args += ["--student", student]
    return args


def _run_section(ws: Workspace, task: str, n_rules: int) -> None:
    teacher, student = sidebar.model("teacher"), sidebar.model("student")
    with job_section(ws, task, "extract", "Extract micro-instructions", expanded=n_rules == 0):
        st.write(f"The teacher {literal(teacher)} writes one reasoning trace and one general, "
                 "checkable rule per training example. Examples that already have a rule are "
                 "skipped, so starting again resumes an interrupted run. Failed ones stay failed "
                 "(a rerun makes no new call) unless you ask for them again.")
        c1, c2 = st.columns(2)
        c1.number_input("Training examples (0 = all)", min_value=0, value=0, step=10,
                        key="x_limit")
        c2.number_input("Parallel calls (0 = default: 1 local, 8 remote)", min_value=0,
                        max_value=64, value=0, key="x_concurrency")
        st.checkbox("Contrastive: show each example beside its most similar training example "
                    "of another label, and ask for the rule that separates them",
                    value=True, key="x_contrastive")
        st.checkbox(f"Start where the student fails: leave out the examples the zero-shot "
                    f"student {literal(student)} already answers right (calibrated on "
                    "validation)", key="x_where_student_fails")
        start_controls(ws, task, Launch(
            "extract", "Start extraction", key="x_start", prefix="x",
            started="Extraction started", command=lambda: _args(task, teacher, student),
            models=(teacher,), priced=True, retry="Ask the failed examples again",
            help="Runs `python -m pld extract` in the background."))


def _first_page() -> None:
    # Other filters, other pages: start again from the first one.
    st.session_state.pop("x_page", None)


def _cluster_filter(ws: Workspace, task: str) -> ClusterFilter | None:
    """The cluster selectbox over the task's current (accepted, else latest) clustering."""
    clustering = current_clustering(ws, task)
    if clustering is None:
        return None
    clusters = [c for c in cluster_summary(ws, clustering["id"]) if not c["noise"]]
    names: dict[Any, str] = {ALL: ALL, NOISE: f"{NOISE} (in no cluster)"}
    names.update({c["id"]: f"{c['id']}: {c['name']} ({c['size']})" for c in clusters})
    # The clustering id is in the key: another clustering has other clusters, so a choice
    # kept in session state from the previous one must not survive.
    key = f"x_cluster_{clustering['id']}"
    chosen = labelled_selectbox(  # a cluster renamed on the Clusters page shows its new name
        f"Cluster (clustering #{clustering['id']}, {clustering['status']})",
        [ALL, *(c["id"] for c in clusters), NOISE], key=key,
        format_func=lambda v: names.get(v, str(v)), on_change=_first_page)
    if chosen == ALL or chosen is None:
        return None
    return (int(clustering["id"]), None if chosen == NOISE else int(chosen))


def _filters(ws: Workspace, task: str, labels: list[str]) -> dict[str, Any]:
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    search = c1.text_input("Search rule, reasoning or error", key="x_search",
                           on_change=_first_page)
    label = c2.selectbox("Gold label", [ALL, *labels], key="x_label", on_change=_first_page)
    status = c3.selectbox("Status", [ALL, "ok", "failed"], key="x_status",
                          on_change=_first_page)
    flag = c4.selectbox("Flags", [ALL, ANY_FLAG, NO_FLAG, *FLAGS], key="x_flag",
                        on_change=_first_page,
                        help="Heuristic warnings for reviewers: "
                             + "; ".join(f"{k}: {v}" for k, v in FLAGS.items()))
    flagged: bool | str | None = {ALL: None, ANY_FLAG: True, NO_FLAG: False}.get(flag, flag)
    return {"search": search.strip() or None, "label": None if label == ALL else label,
            "status": None if status == ALL else status, "flagged": flagged,
            "cluster": _cluster_filter(ws, task)}


def _table(rows: list[dict[str, Any]], effects: dict[int, float]) -> int | None:
    """Draw one page of rules with their verified ``effects``; return the id of a row the
    reviewer just selected, if any."""
    df = pd.DataFrame([{
        "id": r["id"], "gold label": r["label"], "status": r["status"],
        "rule": r["rule"] if r["status"] == "ok" else f"(failed) {r['error'] or ''}",
        "effect": effects.get(r["id"]),
        "flags": ", ".join(r["flags"]), "example": r["example_text"],
    } for r in rows])
    event = untrusted_table(df, "micro-instructions.csv", key="x_table", on_select="rerun",
                            selection_mode="single-row",
                            column_config={"rule": st.column_config.TextColumn(width="large"),
                                           "example": st.column_config.TextColumn(
                                               width="medium")})
    selected = list(event.selection.rows) if event is not None else []
    if not selected:
        return None
    return int(rows[selected[0]]["id"])


def _detail(ws: Workspace, rule_id: int) -> None:
    rule = get_rule(ws, rule_id)
    st.markdown(f"#### Rule #{rule['id']} · {rule['status']}")
    example_pair(rule)
    c1, c2 = st.columns(2)
    with c1:
        if rule["status"] == "ok":
            st.markdown("**Micro-instruction**")
            # Model text: plain, never Markdown.
            st.text(rule["rule"])
            st.markdown("**Teacher's reasoning**")
            st.text(rule["reasoning"])
        else:
            st.markdown("**Failed**")
            say("error", rule["error"] or "no error recorded")  # may quote the reply
            if rule.get("raw"):
                st.markdown("**Raw reply**")
                st.code(rule["raw"], language=None)
        if rule["flags"]:
            st.warning("Flags: " + "; ".join(f"{f}: {FLAGS.get(f, '')}" for f in rule["flags"]))
        restatement_note(rule)
        st.caption(f"teacher {literal(rule['teacher'])} · run {rule['run_id']} · "
                   f"{rule['created_at']}")
    if rule["status"] == "ok":
        with c2:
            evidence_panel(rule)
    call = rule.get("call")
    with st.expander("The raw teacher call"):
        if call is None:
            st.write("No call is recorded for this rule.")
        else:
            st.caption(f"call #{call['id']} · {literal(call['model'])} · "
                       f"{call['input_tokens']} in / {call['output_tokens']} out tokens · "
                       f"{seconds_text(call['latency_s'])} · cache hit {bool(call['cache_hit'])} · "
                       f"attempt {call['attempt']}")
            source = call.get("answered_by")
            if source:
                st.caption(f"The answer of call #{source['id']} ({source['created_at']}"
                           + (f", provider batch {source['batch_id']}" if source["batch_id"]
                              else "") + "), served from the cache.")
            if call.get("system"):
                st.markdown("System")
                st.code(call["system"], language=None)
            for m in call["messages"]:
                st.markdown(literal(m.get("role", "?")))
                st.code(str(m.get("content", "")), language=None)
            st.markdown("Response")
            st.code(call["response"] or call.get("error") or "", language=None)
            st.json(call["params"], expanded=False)


def _rules_section(ws: Workspace, task: str, n_rules: int) -> None:
    st.subheader("Rules")
    effects = rule_effects(ws, task)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Rules", n_rules)
    c2.metric("Failed", count_rules(ws, task, status="failed"))
    c3.metric("Flagged", count_rules(ws, task, status="ok", flagged=True))
    c4.metric("Restate the task", count_rules(ws, task, status="ok", flagged="restates_task"),
              help="Rules whose condition reads like the task description or a label's name "
                   "(and, once verified, moved the student by nearly nothing).")
    if not n_rules:
        st.info("No micro-instructions yet: start an extraction above.")
        return
    filters = _filters(ws, task, task_info(ws, task).labels)
    n = count_rules(ws, task, **filters)
    size = st.selectbox("Rows per page", PAGE_SIZES, index=1, key="x_page_size",
                        on_change=_first_page)
    pages = max(1, math.ceil(n / size))
    page = min(int(st.session_state.get("x_page") or 1), pages)
    rows = list_rules(ws, task, **filters, limit=size, offset=(page - 1) * size)
    if not rows:
        st.info("No rule matches these filters.")
        return
    st.caption(f"Rules {(page - 1) * size + 1:,}–{(page - 1) * size + len(rows):,} of {n:,} "
               "matching")
    picked = _table(rows, effects)
    st.pagination(pages, default=page, key="x_page")
    ids = [int(r["id"]) for r in rows]
    # A newly selected table row opens that rule (the selectbox can still pick another one).
    if picked is not None and picked != st.session_state.get("x_last_pick"):
        st.session_state["x_open"] = picked
    st.session_state["x_last_pick"] = picked
    if st.session_state.get("x_open") not in ids:
        st.session_state["x_open"] = ids[0]
    text = {int(r["id"]): (r["rule"] or r["error"] or "")[:90] for r in rows}
    rule_id = st.selectbox("Open a rule", ids, key="x_open",
                           format_func=lambda i: f"#{i} · {text[i]}")
    _detail(ws, int(rule_id))


def main() -> None:
    """Draw the page."""
    ws, task = task_page("Micro-instructions")
    n_rules = count_rules(ws, task)
    _run_section(ws, task, n_rules)
    if n_rules:
        verify_section(ws, task, len(rule_effects(ws, task, sidebar.model("student"))))
    _rules_section(ws, task, n_rules)


main()
