"""Data: load a built-in task or your own CSV/JSONL file; see split sizes and label balance.

Loading runs in the button's callback (before the page is drawn), so the sidebar can switch to
the task just loaded. Errors are shown inline, as :class:`BadInput` words them (file, line,
field), and nothing is written when the file is not valid. An uploaded file's column pickers
open on the mapping its content suggests (:func:`pld.tasks.columns.guess_columns`), with the
reasons; changing the mapping clears an error about the old one.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from pld import preamble
from pld.errors import BadInput, NotReady
from pld.llm.calls import CallFailed
from pld.llm.teacher_json import UnusableReply
from pld.pipeline.describe import draft_description
from pld.tasks import load_task, task_statuses
from pld.tasks.base import SHAPES
from pld.tasks.columns import ColumnChoice, guess_columns
from pld.tasks.custom import task_name_for
from pld.tasks.stats import label_counts, preview_rows
from pld.tasks.store import task_info
from pld.ui import sidebar, uploads
from pld.ui.acting import NOBODY, record
from pld.ui.escape import hover, literal, say
from pld.ui.page import flash, setup, show_flash
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace

ERROR_KEY = "data_error"
# The tabs keep their choice across reruns (a flash message above them would otherwise move
# them, and the browser would show the first tab again after a file is loaded).
SOURCE_KEY = "data_source"
BUILTIN_TAB, UPLOAD_TAB = "Built-in task", "Your CSV / JSONL"
# The upload and mapping last loaded: its Load button is no longer the page's next step.
LOADED_KEY = "_data_upload_loaded"
PREVIEW_ROWS = 5
SPLITS = ("train", "val", "test")
NO_ID = "(none: number the rows)"
# Widgets whose defaults come from the uploaded file (its name, its columns).
UPLOAD_DEFAULTED = ("data_text_col", "data_label_col", "data_id_col", "data_task_name")
SHAPE_NAMES = {"single": "one text", "pair": "two parts (e.g. question + passage)",
               "multiple-choice": "a question with lettered options"}


@st.cache_data(ttl=60, show_spinner=False)
def _statuses() -> list[dict[str, Any]]:
    # Reading every task's data files takes about half a second: not on every rerun.
    return task_statuses()


def _select_task(name: str) -> None:
    # Allowed here: callbacks run before the sidebar's task selectbox is drawn.
    st.session_state["task"] = name


def _load_builtin(ws: Workspace, name: str, defaults: dict[str, int]) -> None:
    sizes: dict[str, int | None] = {}
    for split in SPLITS:
        value = int(st.session_state.get(f"data_n_{name}_{split}") or 0)
        # The task's own default is kept as "default" (it may be a fraction of the pool).
        sizes[split] = None if value == defaults.get(split) else value
    seed = int(st.session_state.get("data_seed") or 0)
    try:
        counts = load_task(ws, name, n_train=sizes["train"], n_val=sizes["val"],
                           n_test=sizes["test"], seed=seed, who=sidebar.identity())
    except BadInput as e:
        st.session_state[ERROR_KEY] = ("builtin", str(e))
        return
    st.session_state.pop(ERROR_KEY, None)
    record(ws, "task", "load", {"task": name, "counts": counts, "seed": seed})
    _select_task(name)
    flash("success", f"Loaded {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _load_upload(ws: Workspace) -> None:
    upload = st.session_state.get("data_upload")
    if upload is None:
        st.session_state[ERROR_KEY] = ("upload", "Choose a file first.")
        return
    id_column = st.session_state.get("data_id_col")
    opts: dict[str, Any] = {
        "text_column": st.session_state.get("data_text_col"),
        "label_column": st.session_state.get("data_label_col"),
        "id_column": None if id_column in (None, NO_ID) else id_column,
        "seed": int(st.session_state.get("data_upload_seed") or 0),
        "description": (st.session_state.get("data_description") or "").strip() or None,
        "shape": st.session_state.get("data_shape") or "single",
        # Whoever uploads the file wrote its description: they cannot approve the preamble.
        "who": sidebar.identity(),
    }
    try:
        name, counts = uploads.load_custom_upload(
            ws, upload.name, upload.getvalue(),
            name=(st.session_state.get("data_task_name") or "").strip() or None, **opts)
    except BadInput as e:
        st.session_state[ERROR_KEY] = ("upload", str(e))
        return
    st.session_state.pop(ERROR_KEY, None)
    st.session_state[LOADED_KEY] = _upload_mapping()
    st.session_state[SOURCE_KEY] = UPLOAD_TAB
    record(ws, "task", "load", {"task": name, "counts": counts, "file": upload.name})
    _select_task(name)
    flash("success", f"Loaded {name} from {upload.name}: "
                     + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _upload_mapping() -> tuple[Any, ...]:
    """The upload and the choices a load reads, to tell whether this one was loaded."""
    return (st.session_state.get("_data_upload_seen"),
            *(st.session_state.get(k) for k in UPLOAD_DEFAULTED))


def _clear_error(where: str) -> None:
    # An error about the old mapping is stale once the mapping changes.
    err = st.session_state.get(ERROR_KEY)
    if err and err[0] == where:
        st.session_state.pop(ERROR_KEY, None)


def _inline_error(where: str) -> None:
    err = st.session_state.get(ERROR_KEY)
    if err and err[0] == where:
        say("error", err[1])  # may quote the uploaded file or the teacher


def _builtin_section(ws: Workspace) -> None:
    statuses = [t for t in _statuses() if t["name"] != "custom"]
    by_name = {t["name"]: t for t in statuses}
    names = list(by_name)
    name = st.selectbox(
        # The demo first: it needs no download, so a new user can start right away.
        "Task", names, key="data_task", index=names.index("demo") if "demo" in names else 0,
        format_func=lambda n: n + ("" if by_name[n].get("available") else "  (data not found)"))
    info = by_name[name]
    say("caption", info.get("description") or "")
    if info.get("notes"):
        say("caption", info["notes"])  # file names and commands, not Markdown
    defaults = {s: int(v) for s, v in (info.get("split_sizes") or {}).items()}
    cols = st.columns(4)
    for col, split in zip(cols, SPLITS, strict=False):
        col.number_input(f"{split} examples", min_value=0, value=defaults.get(split, 0),
                         step=10, key=f"data_n_{name}_{split}",
                         help="0 = every example of the pool; the default is the task's.")
    cols[3].number_input("Seed", min_value=0, value=0, key="data_seed")
    available = bool(info.get("available"))
    st.button("Load", key="data_load", type="primary", disabled=not available,
              on_click=_load_builtin, args=(ws, name, defaults),
              help=None if available else "Its data files were not found; see the notes above "
                                          "(python -m pld download TASK).")
    _inline_error("builtin")


def _forget_old_upload(upload: Any) -> None:
    """Drop the mapping chosen for a previous file when another one is uploaded.

    A keyed widget keeps its stored value and ignores a new ``value=``/``index=``, so without
    this a second file would get the first file's task name and columns as defaults.
    """
    seen = getattr(upload, "file_id", None) or f"{upload.name}:{upload.size}"
    if st.session_state.get("_data_upload_seen") != seen:
        for key in UPLOAD_DEFAULTED:
            st.session_state.pop(key, None)
        _clear_error("upload")  # it was about the previous file
        st.session_state["_data_upload_seen"] = seen


def _upload_section(ws: Workspace) -> None:
    upload = st.file_uploader("CSV, TSV or JSONL with a text column and a label column",
                              type=list(uploads.SUPPORTED), key="data_upload")
    if upload is None:
        _inline_error("upload")
        return
    _forget_old_upload(upload)
    try:
        columns, rows = uploads.peek(upload.name, upload.getvalue(), limit=uploads.SAMPLE_ROWS)
    except BadInput as e:
        say("error", e)  # may quote the uploaded file
        return
    if not columns:
        st.error("No columns found in the uploaded file:")
        st.text(upload.name)  # the uploader's file name: plain, never Markdown
        return
    guess: ColumnChoice | None
    try:
        guess = guess_columns(columns, rows, source=upload.name)
    except BadInput as e:
        guess = None
        say("warning", e)  # names the file's columns
    c1, c2, c3 = st.columns(3)
    c1.selectbox("Text column", columns, key="data_text_col",
                 index=columns.index(guess.text_column) if guess else 0,
                 on_change=_clear_error, args=("upload",))
    c2.selectbox("Label column", columns, key="data_label_col",
                 index=columns.index(guess.label_column) if guess else min(1, len(columns) - 1),
                 on_change=_clear_error, args=("upload",))
    id_options = [NO_ID, *columns]
    c3.selectbox("Id column (optional)", id_options, key="data_id_col",
                 index=id_options.index(guess.id_column) if guess and guess.id_column else 0,
                 on_change=_clear_error, args=("upload",))
    if guess:
        say("caption", "Guessed from the content: " + "; ".join(guess.reasons))
    say("caption", f"Preview: the first {min(len(rows), PREVIEW_ROWS)} rows of {upload.name}")
    untrusted_table(pd.DataFrame(rows[:PREVIEW_ROWS]).astype(str), "upload-preview.csv")
    c1, c2 = st.columns([3, 1])
    c1.text_input("Task name", value=task_name_for(upload.name), key="data_task_name")
    c2.number_input("Seed", min_value=0, value=0, key="data_upload_seed")
    st.text_area(
        "Task description", key="data_description",
        placeholder="What one input is made of and what each label means. Example: Each "
                    "input is a customer question and one clause of a policy; relevant if the "
                    "clause answers the question, irrelevant otherwise.",
        help="The first thing the teacher and the student read. Left empty, they only learn "
             "the file name and the labels; you can draft one with the teacher after loading.")
    st.radio("An input is", list(SHAPES), key="data_shape", horizontal=True,
             format_func=SHAPE_NAMES.get,
             help="Picks the form of the teacher's rules: about one text, about how two parts "
                  "relate, or about how to choose among lettered options.")
    loaded = st.session_state.get(LOADED_KEY) == _upload_mapping()
    st.button("Load file", key="data_load_upload", type="secondary" if loaded else "primary",
              on_click=_load_upload, args=(ws,),
              help="Loaded as below; change the mapping or the options to load it again."
              if loaded else None)
    _inline_error("upload")


def _keep_description(ws: Workspace, task: str, base: str) -> None:
    text = st.session_state.get(f"data_desc_edit_{task}") or ""
    me = sidebar.identity()
    if me is None:
        st.session_state[ERROR_KEY] = ("describe", f"Not kept: {NOBODY} first.")
        return
    try:
        changed = preamble.set_description(ws, task, text, me, base=base)
    except BadInput as e:
        st.session_state[ERROR_KEY] = ("describe", str(e))
        return
    st.session_state.pop(ERROR_KEY, None)
    flash("success", "Description kept." if changed else "The description was already this.")


def _draft_description(ws: Workspace, task: str) -> None:
    # The draft (or why there is none) shows inside the expander: keep it open.
    st.session_state[f"data_desc_open_{task}"] = True
    teacher = sidebar.model("teacher")
    try:
        with st.spinner(f"{literal(teacher)} is reading a sample of labelled examples..."):
            draft = draft_description(ws, task, teacher)
    except (BadInput, NotReady, UnusableReply, CallFailed) as e:
        st.session_state[ERROR_KEY] = ("describe", f"No draft: {e}")
        return
    st.session_state.pop(ERROR_KEY, None)
    # A callback runs before the text area is drawn, so the draft can fill it.
    st.session_state[f"data_desc_edit_{task}"] = draft
    flash("info", "The teacher's draft is in the box below: edit it, then keep it.")


def _description_section(ws: Workspace, task: str) -> None:
    info = task_info(ws, task)
    st.markdown("**Description** (what the teacher and the student read first)")
    if info.description.strip():
        st.text(info.description)  # uploader-written text: plain, never Markdown
    else:
        st.warning("This task has no description: the models only see its labels.")
    with st.expander("Edit the description", expanded=not info.description.strip(),
                     key=f"data_desc_open_{task}", on_change="rerun"):
        st.text_area("Description", value=info.description, key=f"data_desc_edit_{task}",
                     height=120)
        c1, c2 = st.columns(2)
        c1.button("Draft with the teacher", key="data_desc_draft", on_click=_draft_description,
                  args=(ws, task), help="The teacher reads a few labelled training examples "
                                        "per label and proposes a description; nothing is "
                                        "kept until you keep it.")
        c2.button("Keep this description", key="data_desc_keep", type="primary",
                  on_click=_keep_description, args=(ws, task, info.description),
                  help="Recorded in the audit trail under your reviewer name; prompts built "
                       "from now on start with it.")
        _inline_error("describe")


def _task_section(ws: Workspace, task: str) -> None:
    counts = label_counts(ws, task)
    st.subheader(f"Task: {literal(task)}")
    _description_section(ws, task)
    cols = st.columns(len(SPLITS))
    for col, split in zip(cols, SPLITS, strict=True):
        col.metric(f"{split} examples", sum(counts.get(split, {}).values()))
    # Labels come from the uploader's file; Plotly reads tick and hover text as HTML.
    long = pd.DataFrame([{"split": split, "label": hover(label), "examples": n}
                         for split, by_label in counts.items() for label, n in by_label.items()])
    if not long.empty:
        fig = px.bar(long, x="label", y="examples", color="split", barmode="group",
                     title="Label balance per split")
        fig.update_layout(height=340, margin={"t": 40, "b": 20})
        st.plotly_chart(fig)
    split = st.selectbox("Preview split", [s for s in SPLITS if s in counts] or list(SPLITS),
                         key="data_preview_split")
    rows = preview_rows(ws, task, split, limit=10)
    untrusted_table(pd.DataFrame([{"id": r["ext_id"], "label": r["label"], "text": r["text"]}
                                  for r in rows]), f"{split}-preview.csv")


def main() -> None:
    """Draw the page."""
    st.title("Data")
    ws, task = setup()
    if ws is None:
        return
    show_flash()
    # Back on this page with one's own task chosen, its tab opens, not the built-in one with
    # its Load button above the task.
    own_task = bool(task) and task_info(ws, task).kind == "custom"
    builtin, own = st.tabs([BUILTIN_TAB, UPLOAD_TAB], key=SOURCE_KEY, on_change="rerun",
                           default=UPLOAD_TAB if own_task else BUILTIN_TAB)
    with builtin:
        _builtin_section(ws)
    with own:
        _upload_section(ws)
    st.divider()
    if task:
        _task_section(ws, task)
    else:
        st.info("No task is loaded in this workspace yet: load the demo task (the Built-in "
                "task tab) to try PLD Studio, a built-in benchmark, or your own labelled file.")


main()
