"""The measured effect of each approved heuristic on the student (Heuristics page): measuring
it in the background (``python -m pld review impact``) and the latest report
(:mod:`pld.pipeline.resolve.impact`), harmful heuristics first."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld.number_format import delta_text, score, score_text
from pld.pipeline.resolve import impact
from pld.ui import sidebar
from pld.ui.escape import literal
from pld.ui.launcher import Launch, job_section, start_controls
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace


def impact_panel(ws: Workspace, task: str) -> None:
    """Draw "Measured effect on the student": Measure, then the latest report of ``task``."""
    student = sidebar.model("student")
    report = impact.latest_impact(ws, task)
    with job_section(ws, task, "impact", "Measured effect on the student (evidence per "
                     "heuristic)", expanded=report is not None):
        st.write(f"The student {literal(student)} answers the validation split with all "
                 "approved heuristics, without each one in turn, and with none. A heuristic's "
                 "effect is validation macro-F1 with it minus without it (paired bootstrap 95% "
                 "CI); it *fixes* answers that are right only with it and *breaks* answers that "
                 "are right only without it. Harmful ones come first.")
        start_controls(ws, task, Launch(
            "impact", "Measure the approved heuristics", key="h_impact", prefix="h_impact",
            started="Measuring each heuristic's effect",
            command=lambda: ["review", "impact", task, "--student", student],
            models=(student,),
            help="Runs `python -m pld review impact` in the background; every prompt is one "
                 "pass over the validation split (cached calls are free)."))
        if report is None:
            st.caption("Not measured yet.")
        else:
            _report(report)


def _report(report: dict[str, Any]) -> None:
    key = "calibrated_macro_f1" if report["metric"] == "calibrated" else "macro_f1"
    if not report.get("current"):
        st.warning("Measured on an earlier set of approved heuristics: measure again to see "
                   "the current set.")
    c1, c2, c3 = st.columns(3)
    c1.metric("All approved heuristics", score_text(report['full'][key]))
    c2.metric("No heuristics", score_text(report['no_rules'][key]),
              delta=delta_text(report['no_rules'][key] - report['full'][key]))
    c3.metric("Harmful heuristics", sum(h["harmful"] for h in report["heuristics"]))
    st.caption(f"Student {literal(report['student'])} · {report['n_val']} validation items · "
               f"{report['metric']} answers (macro-F1) · measured {report['created_at']}")
    untrusted_table(pd.DataFrame([{
        "#": h["number"], "id": h["heuristic_id"], "effect": score(h["effect"]),
        "CI low": score((h["ci"] or [None, None])[0]),
        "CI high": score((h["ci"] or [None, None])[1]),
        "fixes": len(h["fixes"]), "breaks": len(h["breaks"]),
        "F1 without": score(h["without"].get(key)), "harmful": h["harmful"], "text": h["text"],
    } for h in report["heuristics"]]), "heuristic-impact.csv",
        column_config={**{k: st.column_config.NumberColumn(format="%+.3f")
                          for k in ("effect", "CI low", "CI high")},
                       "F1 without": st.column_config.NumberColumn(format="%.3f"),
                       "text": st.column_config.TextColumn(width="large")})
