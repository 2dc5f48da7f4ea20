"""Home: what is in the workspace and which models are in use."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pld.llm.local_backend import loaded_models
from pld.overview import workspace_overview
from pld.tasks import data_dirs, task_statuses
from pld.ui import page, sidebar
from pld.ui.plain import literal


@st.cache_data(ttl=60, show_spinner=False)
def _builtin_tasks(roots: tuple[str, ...]) -> list[dict[str, object]]:
    # Reading every data file takes ~0.4 s; they change only when `pld download` runs.
    return task_statuses([Path(r) for r in roots])


st.title("PLD Studio")
st.caption("Prompt-Level Distillation with people in the loop: a teacher writes rules, people "
           "approve them, a small student follows them.")

ws, _task = page.setup()
if ws is not None:
    ov = workspace_overview(ws)
    c1, c2, c3 = st.columns(3)
    c1.metric("Tasks loaded", len(ov["tasks"]))
    c2.metric("LLM calls", ov["calls"]["calls"], help="Cache hits included")
    c3.metric("Cache hits", ov["calls"]["cache_hits"])
    st.subheader("Tasks in this workspace")
    if ov["tasks"]:
        st.dataframe(pd.DataFrame([{
            "task": t["name"], "labels": ", ".join(t["labels"]),
            **{f"{s} examples": t["splits"].get(s, 0) for s in ("train", "val", "test")},
            "rules": sum(t["rules"].values()), "heuristics": sum(t["heuristics"].values()),
            "approved": t["heuristics"].get("approved", 0),
            "prompt versions": t["prompt_versions"],
        } for t in ov["tasks"]]), hide_index=True, width="stretch")
    else:
        st.info("No task loaded yet. Load one with `python -m pld load demo` (or from the Data "
                "page).")

st.subheader("Built-in tasks")
st.dataframe(pd.DataFrame([{
    "task": t["name"], "labels": ", ".join(t.get("labels") or []),
    "data found": t.get("available"), "notes": t.get("notes") or "",
} for t in _builtin_tasks(tuple(map(str, data_dirs())))]), hide_index=True, width="stretch")

st.subheader("Models")
st.write(f"Teacher: {literal(sidebar.model('teacher'))} · "
         f"Student: {literal(sidebar.model('student'))}")
loaded = loaded_models()
if loaded:
    st.dataframe(pd.DataFrame(loaded), hide_index=True)
else:
    st.caption("No local model process started by this server yet; one starts on first use "
               "(background jobs start their own).")
