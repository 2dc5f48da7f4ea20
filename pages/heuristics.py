"""Heuristics: consolidate clusters into draft heuristics, then review them.

Every action runs as the reviewer named in the sidebar (:mod:`pld.ui.acting`). Buttons act in
``on_click`` callbacks whose arguments are bound when the page is drawn, so an approval or an
edit carries the version the reviewer was looking at: if someone else changed the heuristic in
between, review refuses it as stale instead of silently overwriting.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld import drafts, review, review_rows
from pld.authorship import Authorship
from pld.identity import Identity
from pld.ui import page, sidebar
from pld.ui.acting import review_page
from pld.ui.approvers_panel import approvers_panel
from pld.ui.escape import literal, say
from pld.ui.heuristic_detail import heuristic_detail
from pld.ui.heuristic_drafts import create_panel, merge_panel, short
from pld.ui.impact_view import impact_panel
from pld.ui.launcher import Launch, job_section, start_controls
from pld.ui.preamble_view import preamble_panel
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace

MERGE_MODES = {"all": "teacher merges all rules (paper)",
               "by-label": "teacher merges each label apart",
               "medoid": "most typical rule per label (no teacher call)"}


def _consolidate_args(task: str, teacher: str) -> list[str]:
    """The consolidate command the section's settings stand for."""
    merge = st.session_state.get("h_merge_mode", "all")
    args = ["consolidate", task, "--teacher", teacher]
    return args if merge == "all" else [*args, "--merge", merge]


def _consolidate_section(ws: Workspace, task: str, empty: bool) -> None:
    teacher = sidebar.model("teacher")
    with job_section(ws, task, "consolidate", "Consolidate clusters into heuristics",
                     expanded=empty):
        st.write(f"The teacher {literal(teacher)} merges each cluster's rules into one draft "
                 "heuristic, keeping minority labels and edge cases explicit. Clusters that "
                 "already have a heuristic are skipped, so running it again only fills the gaps; "
                 "clusters whose reply was unusable stay failed unless you ask for them again.")
        st.radio("How a cluster becomes a heuristic", list(MERGE_MODES), key="h_merge_mode",
                 format_func=MERGE_MODES.get, horizontal=True,
                 help="The paper lets the teacher merge all of a cluster's rules. A small "
                      "teacher tends to keep one odd rule and drop the minority labels: merging "
                      "each label apart, or keeping each label's most typical rule, avoids that.")
        # The job acts as the starter: its drafts are theirs, so someone else approves them.
        start_controls(ws, task, Launch(
            "consolidate", "Consolidate", key="h_consolidate", prefix="h",
            started="Consolidation started", command=lambda: _consolidate_args(task, teacher),
            models=(teacher,), priced=True, retry="Ask the failed clusters again",
            help="Runs `python -m pld consolidate` in the background."))


def _overview(rows: list[dict[str, Any]]) -> None:
    counts = pd.Series([r["status"] for r in rows]).value_counts()
    cols = st.columns(len(review_rows.STATUSES))
    for col, status in zip(cols, review_rows.STATUSES, strict=True):
        col.metric(status.title(), int(counts.get(status, 0)))


def _table(rows: list[dict[str, Any]]) -> None:
    untrusted_table(pd.DataFrame([{
        "id": r["id"], "status": r["status"], "version": r["version"],
        "text": r["text"], "sources": len(r["source_rule_ids"]),
        "written by": Authorship.from_row(r).by,
        "approved by": r["approved_by"] or "",
    } for r in rows]), "heuristics.csv",
        column_config={"text": st.column_config.TextColumn(width="large")})


def _pick(ws: Workspace, rows: list[dict[str, Any]], me: Identity | None) -> int:
    """The heuristic to open among ``rows``: the one the Home page's queue names, else, in a
    new session (a reload), the one ``me`` last left an unsaved draft on, saying so."""
    by_id = {r["id"]: r for r in rows}
    wanted = st.session_state.pop("_pld_open_heuristic", None)
    drafted = ([i for i in drafts.drafted_items(ws, me, review_rows.HEURISTIC) if i in by_id]
               if me is not None and me.is_person else [])
    if wanted is None and "h_selected" not in st.session_state and drafted:
        wanted = drafted[0]
    if wanted in by_id:
        st.session_state["h_selected"] = wanted

    def label(i: int) -> str:
        return f"#{i} · {by_id[i]['status']} · {short(by_id[i]['text'])}"

    chosen = page.labelled_selectbox("Open heuristic", list(by_id), key="h_selected",
                                     format_func=label)
    others = [i for i in drafted if i != chosen]
    if others:
        say("info", "You also have unsaved drafts on heuristic "
                    + ", ".join(f"#{i}" for i in others) + ": open one to restore or discard "
                    "its draft.")
    return chosen


def main() -> None:
    """Draw the page."""
    ws, task, me = review_page(
        "Heuristics", "Each heuristic merges one cluster of micro-instructions. Only approved "
        "heuristics enter the student's prompt; whoever wrote a heuristic's text, started the "
        "job that wrote it or accepted it cannot approve it (four-eyes).",
        "edit, approve or reject heuristics")
    rows = review.list_heuristics(ws, task)
    _consolidate_section(ws, task, empty=not rows)
    approvers = approvers_panel(ws, task, me)
    create_panel(ws, task, me)
    if not rows:
        say("info", f"Task {task} has no heuristics yet. Cluster its micro-instructions on "
                    "the Clusters page, then consolidate them above.")
        return
    _overview(rows)
    merge_panel(ws, rows, me)
    show = st.selectbox("Show", ["all", *review_rows.STATUSES], key="h_filter")
    shown = rows if show == "all" else [r for r in rows if r["status"] == show]
    if not shown:
        st.info(f"No {show} heuristics.")
    else:
        _table(shown)
        heuristic_detail(ws, _pick(ws, shown, me), me, approvers)
    st.divider()
    # After the heuristics: the rest of the prompt, signed off the same way.
    preamble_panel(ws, task, me)
    # Last: the evidence is about the approved set as a whole, not the heuristic opened above.
    impact_panel(ws, task)


main()
