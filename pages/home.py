"""Home: what is in the workspace and which models are in use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pld.llm.local_backend import loaded_models
from pld.overview import workspace_overview
from pld.review_queue import reviewer_queue
from pld.tasks import data_dirs, task_statuses
from pld.ui import page, sidebar
from pld.ui.acting import SIGN_IN
from pld.ui.escape import say
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace

PAGE_FILES = {"heuristics": "pages/heuristics.py", "conflicts": "pages/conflicts.py",
              "export": "pages/export.py"}
KIND_TITLES = {"approve": "to approve", "decide": "proposals to decide",
               "others-sign": "written, started or accepted by you: for someone else to sign",
               "failed-job": "failed jobs", "export-blocked": "exports blocked"}


def _open(item: dict[str, object]) -> None:
    # A callback runs before the sidebar is drawn, so the task can still be switched here;
    # the page reads its own "_pld_open_*" key when it draws its picker.
    st.session_state["task"] = item["task"]
    if item["what"] in ("heuristic", "preamble"):
        st.session_state["_pld_open_heuristic"] = item["id"] if item["what"] == "heuristic" \
            else None
    elif item["what"] == "proposal":
        st.session_state["_pld_open_iteration"] = item["iteration"]
    elif item["what"] == "prompt":
        st.session_state["x_version"] = item["id"]
    st.session_state["_pld_goto"] = PAGE_FILES.get(str(item["page"]))


def _open_label(item: dict[str, object]) -> str:
    what = item["what"]
    if what == "preamble":
        return "Open the preamble"
    return f"Open {what} " + (f"v{item['id']}" if what == "prompt" else f"#{item['id']}")


def _queue(ws: Workspace) -> None:
    """What waits for the signed-in reviewer, each item one click from where it is resolved."""
    me = sidebar.identity()
    st.subheader("Your queue")
    if me is None:
        st.caption(f"{SIGN_IN} to see what waits for you.")
        return
    q = reviewer_queue(ws, me)
    if not q["items"]:
        say("success", f"Nothing waits for {me.name}.")
        return
    st.caption(" · ".join(f"{n} {KIND_TITLES[k]}" for k, n in q["counts"].items() if n))
    for members in _by_run(q["items"]):
        with st.container(border=True):
            if len(members) == 1:
                _item_row(*members[0], kind_caption=True)
                continue
            first = members[0][1]
            run = first["run"]
            st.markdown(f"**{len(members)} drafts from {run['kind']} run {run['id']}**")
            say("caption", f"{KIND_TITLES[first['kind']]} · task {first['task']} · started by "
                           f"{run['started_by'] or 'a command line'} at {run['started_at']}")
            with st.expander(f"The {len(members)} drafts of run {run['id']}"):
                for i, item in members:
                    _item_row(i, item, kind_caption=False)


def _by_run(items: list[dict[str, Any]]) -> list[list[tuple[int, dict[str, Any]]]]:
    """The queue's items (with their place in it), the drafts one run wrote for the same
    action together where the run's first draft stands; everything else on its own."""
    groups: list[list[tuple[int, dict[str, Any]]]] = []
    of_run: dict[tuple[str, str, int], list[tuple[int, dict[str, Any]]]] = {}
    for i, item in enumerate(items):
        run = item.get("run")
        key = (item["kind"], item["task"], run["id"]) if run else None
        if key is not None and key in of_run:
            of_run[key].append((i, item))
            continue
        groups.append([(i, item)])
        if key is not None:
            of_run[key] = groups[-1]
    return groups


def _item_row(i: int, item: dict[str, Any], kind_caption: bool) -> None:
    left, right = st.columns([3, 1])  # room for the whole "Open heuristic #12"
    if kind_caption:
        say("caption", f"{KIND_TITLES[item['kind']]} · task {item['task']}", where=left)
    left.text(item["summary"])  # model- and reviewer-written text: plain
    if item["page"] in PAGE_FILES:
        right.button(_open_label(item), key=f"home_open_{i}", on_click=_open, args=(item,))


@st.cache_data(ttl=60, show_spinner=False)
def _builtin_tasks(roots: tuple[str, ...]) -> list[dict[str, object]]:
    # Reading every data file takes ~0.4 s; they change only when `pld download` runs.
    return task_statuses([Path(r) for r in roots])


st.title("PLD Studio")
st.caption("Prompt-Level Distillation with people in the loop: a teacher writes rules, people "
           "approve them, a small student follows them.")

ws, _task = page.setup()
goto = st.session_state.pop("_pld_goto", None)
if goto:
    # Keep the address's parameters: the reviewer's name lives there across reloads.
    st.switch_page(goto, query_params=st.query_params.to_dict())
if ws is not None:
    _queue(ws)
    ov = workspace_overview(ws)
    c1, c2, c3 = st.columns(3)
    c1.metric("Tasks loaded", len(ov["tasks"]))
    c2.metric("LLM calls", ov["calls"]["calls"], help="Cache hits included")
    c3.metric("Cache hits", ov["calls"]["cache_hits"])
    st.subheader("Tasks in this workspace")
    if ov["tasks"]:
        # Counts only, under short headings: the label names (a long list for some tasks)
        # pushed the table past the page's width, so they are listed under it.
        untrusted_table(pd.DataFrame([{
            "task": t["name"], "labels": len(t["labels"]),
            **{s: t["splits"].get(s, 0) for s in ("train", "val", "test")},
            "rules": sum(t["rules"].values()), "heuristics": sum(t["heuristics"].values()),
            "approved": t["heuristics"].get("approved", 0),
            "prompts": t["prompt_versions"],
        } for t in ov["tasks"]]), "tasks.csv", width="stretch",
            column_config={"task": st.column_config.TextColumn(width="medium")})
        for t in ov["tasks"]:
            say("caption", f"{t['name']} labels: {', '.join(t['labels'])}")
    else:
        st.info("No task loaded yet. Load one with `python -m pld load demo` (or from the Data "
                "page).")

st.subheader("Built-in tasks")
builtin = [t for t in _builtin_tasks(tuple(map(str, data_dirs()))) if t["name"] != "custom"]
# Shipped with the app, no text from an upload or a model: no download of its own.
st.dataframe(pd.DataFrame([{
    "task": t["name"], "labels": ", ".join(t.get("labels") or []),
    "data found": t.get("available"),
} for t in builtin]), hide_index=True, width="stretch")
with st.expander("About their data"):
    # Whole sentences that wrap, rather than a table cell that cuts them off.
    for t in builtin:
        st.markdown(f"**{t['name']}**")
        st.text(t.get("notes") or "–")
st.caption("Your own labelled examples: upload a CSV or JSONL file on the Data page, with a "
           "sentence that says what the task is.")

st.subheader("Models")
# Plain text: a model string's URL must not become a link.
st.text(f"Teacher: {sidebar.model('teacher')} · Student: {sidebar.model('student')}")
loaded = loaded_models()
if loaded:
    untrusted_table(pd.DataFrame(loaded), "local-models.csv")
else:
    st.caption("No local model process started by this server yet; one starts on first use "
               "(background jobs start their own).")
