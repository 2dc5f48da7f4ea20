"""Conflicts: the student runs on validation, the teacher proposes per-heuristic changes from
its errors, and reviewers accept or reject them (:mod:`pld.pipeline.resolve.loop`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pld.errors import BadInput
from pld.identity import Identity
from pld.number_format import delta_text, score
from pld.pipeline import student
from pld.pipeline.resolve import decisions, state, view
from pld.ui import diffs, page, sidebar
from pld.ui.acting import act, review_page
from pld.ui.escape import literal
from pld.ui.launcher import Launch, job_section, start_controls
from pld.workspace import Workspace

PAGE_SIZE = 10


def _label(value: str | None) -> str:
    return value if value is not None else "(no valid label)"


# -- callbacks ------------------------------------------------------------------------------------

def _decide(ws: Workspace, pid: int, accept: bool, comment_key: str) -> None:
    comment = (st.session_state.get(comment_key) or "").strip() or None

    def run(who: Identity) -> str:
        p = decisions.decide_proposal(ws, pid, accept, who, comment=comment)
        if not accept:
            return f"Rejected proposal #{pid}."
        if p["kind"] == state.REMOVE:
            return f"Accepted proposal #{pid}: heuristic #{p['heuristic_id']} is now rejected."
        return (f"Accepted proposal #{pid}: the new text is a draft by {literal(who.name)}; "
                "someone else must approve it on the Heuristics page before the next iteration.")

    act(f"decide proposal #{pid}", run,
        refused=lambda e: f"Proposal #{pid} not decided: {literal(e)}")


def _args(task: str, student: str, teacher: str, retry: bool) -> list[str]:
    """The resolve command the section's settings stand for."""
    args = ["resolve", task, "--student", student, "--teacher", teacher,
            "--iterations", str(int(st.session_state.get("c_iterations") or 1))]
    if retry:
        args.append("--retry-failed")
    limit = int(st.session_state.get("c_val_limit") or 0)
    if limit:
        args += ["--val-limit", str(limit)]
    return args


# -- drawing --------------------------------------------------------------------------------------

def _run_section(ws: Workspace, task: str, has_history: bool, retry: bool) -> None:
    student, teacher = sidebar.model("student"), sidebar.model("teacher")
    with job_section(ws, task, "resolve", "Run the student on validation and propose changes",
                     expanded=not has_history):
        st.write(f"Student {literal(student)} classifies the validation split with the "
                 f"approved heuristics; teacher {literal(teacher)} proposes edits from its errors "
                 "(and a sample of its successes). The loop stops after proposing, until you "
                 "decide.")
        c1, c2 = st.columns(2)
        c1.number_input("New iterations", min_value=1, max_value=10, value=1, key="c_iterations")
        c2.number_input("Validation items (0 = all)", min_value=0, value=0, step=10,
                        key="c_val_limit")
        start_controls(ws, task, Launch(
            "resolve", "Run conflict loop", key="c_run", prefix="c",
            started="Conflict loop started",
            command=lambda: _args(task, student, teacher, retry), models=(student,),
            priced=True))


def _chart(history: list[dict[str, Any]]) -> None:
    df = pd.DataFrame(history)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=df["iteration"], y=df["macro_f1"], mode="lines+markers", name="validation macro-F1",
        marker={"size": 11, "color": ["#2e7d32" if a else "#c62828" for a in df["adopted"]]},
        customdata=df[["prompt_version", "n_errors"]],
        hovertemplate="iteration %{x}<br>macro-F1 %{y:.3f}<br>prompt v%{customdata[0]}"
                      "<br>errors %{customdata[1]}<extra></extra>",
    ))
    fig.update_layout(xaxis_title="iteration", yaxis_title="validation macro-F1",
                      xaxis={"dtick": 1}, yaxis={"range": [0, 1.02]}, height=320,
                      margin={"t": 30, "b": 30})
    st.plotly_chart(fig)
    st.caption("Green: adopted (not below the best so far); red: scored lower and reverted.")


def _history_table(history: list[dict[str, Any]]) -> None:
    st.dataframe(pd.DataFrame([{
        "iteration": h["iteration"], "prompt": f"v{h['prompt_version']}",
        "macro-F1": score(h["macro_f1"]), "answers": h.get("metric", "raw"),
        "raw macro-F1": score(h.get("raw_macro_f1")),
        # Text, not a number: the first iteration has no best before it, and a browser table
        # shows a missing number as "None".
        "Δ vs best": delta_text(h["delta"]) if h["delta"] is not None else "",
        "errors": h["n_errors"],
        "adopted": h["adopted"], "best": f"v{h['best_version']}",
        "proposals": h["proposals_made"], "accepted": h["proposals_accepted"],
        "rejected": h["proposals_rejected"], "pending": h["proposals_pending"],
        "stop": h["stop"] or "", "student": h["student"],
    } for h in history]), hide_index=True,
        column_config={"macro-F1": st.column_config.NumberColumn(format="%.3f"),
                       "raw macro-F1": st.column_config.NumberColumn(format="%.3f")})
    if any(h.get("metric") == "calibrated" for h in history):
        st.caption("macro-F1 is scored on calibrated answers (each version's own per-label "
                   "bias, fitted on these validation items): what adoption compares and what "
                   "ships. The raw column is the student's own answers.")


def _dropped(record: dict[str, Any]) -> None:
    """What the teacher proposed in this iteration that the loop did not keep, and why."""
    if not record["dropped"]:
        return
    with st.expander(f"Dropped proposals of iteration {record['iteration']} "
                     f"({len(record['dropped'])})"):
        for d in record["dropped"]:
            st.caption(f"{d['kind']} of heuristic #{d['heuristic_id']}: dropped because "
                       f"{d['reason']}")
            if d["text"]:
                st.text(d["text"])  # the teacher's words: plain


def _prompt_of(ws: Workspace, task: str, record: dict[str, Any]) -> None:
    """The exact system prompt the student ran with in this iteration, byte for byte."""
    version = record["prompt_version"]
    try:
        prompt = student.get_prompt(ws, task, version)
    except BadInput:
        st.caption(f"Prompt v{version} is no longer in the workspace.")
        return
    basis = record.get("basis_version")
    with st.expander(f"The prompt the student ran with in iteration {record['iteration']} "
                     f"(v{version}, {len(prompt.heuristic_ids)} heuristics)"):
        st.caption(f"sha256 {prompt.sha256[:16]}… · built by {literal(prompt.built_by or '–')}"
                   f" at {prompt.created_at}" + (
                       f" · it scored lower than the best, so the proposals address the "
                       f"errors of v{basis}" if basis is not None and basis != version else ""))
        st.code(prompt.text, language=None, wrap_lines=True)


def _change_html(p: dict[str, Any]) -> str:
    current = (p["heuristic"] or {}).get("text") or ""
    if p["kind"] == state.ADD:
        return diffs.diff_html("", p["text"])
    if p["kind"] == state.REMOVE:
        return diffs.diff_html(current, "")
    return diffs.diff_html(current, p["text"])


def _proposal_card(ws: Workspace, p: dict[str, Any], me: Identity | None,
                   prefix: str) -> None:
    pid, kind = p["id"], p["kind"]
    target = "a new heuristic" if kind == state.ADD else f"heuristic #{p['heuristic_id']}"
    with st.container(border=True):
        st.markdown(f"**Proposal #{pid}** · {kind} {target} · *{p['status']}*")
        if p["rationale"]:
            st.text(p["rationale"])  # the teacher's words: plain, never Markdown
        if kind != state.ADD and p["heuristic"] is None:
            st.warning(f"Heuristic #{p['heuristic_id']} no longer exists.")
        st.html(_change_html(p))
        if p["status"] != state.PENDING:
            made = (f" (created heuristic #{p['created_heuristic_id']})"
                    if p.get("created_heuristic_id") else "")
            st.caption(f"{p['status']} by {literal(p['decided_by'])} at {p['decided_at']}{made}")
            return
        # Per person: a comment typed under one name is never recorded under another.
        comment_key = f"{prefix}_comment_{pid}_{me.name if me else ''}"
        st.text_input("Comment", key=comment_key, disabled=me is None)
        c1, c2 = st.columns(2)
        c1.button("Accept", key=f"{prefix}_accept_{pid}", type="primary", disabled=me is None,
                  on_click=_decide, args=(ws, pid, True, comment_key))
        c2.button("Reject", key=f"{prefix}_reject_{pid}", disabled=me is None,
                  on_click=_decide, args=(ws, pid, False, comment_key))


def _unattributed(record: dict[str, Any]) -> str:
    """Why an error of this iteration names no heuristic."""
    if record["proposed"]:
        return "No heuristic was attributed: the prompt had none to attribute it to."
    if record["stop"]:
        return ("Not attributed: the loop stopped at this iteration before asking the teacher "
                "(see why above).")
    return "Not attributed yet: the teacher has not proposed for this iteration."


def _related(err: dict[str, Any], proposals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The proposals that touch an error's heuristics or cite it as evidence."""
    involved = {h["id"] for h in err["heuristics"]}
    return [p for p in proposals
            if p["heuristic_id"] in involved or err["example_id"] in p["evidence"]]


def _error_card(ws: Workspace, err: dict[str, Any], proposals: list[dict[str, Any]],
                me: Identity | None, unattributed: str) -> None:
    related = _related(err, proposals)
    with st.container(border=True):
        left, right = st.columns(2)
        with left:
            st.markdown(f"**Example #{err['example_id']}** ({literal(err['ext_id'])})")
            st.text(err["text"])
            st.markdown(f"Gold **{literal(err['gold'])}** · predicted "
                        f"**{literal(_label(err['predicted']))}**")
            if err["raw"] is not None and err["raw"] != err["predicted"]:
                st.caption(f"Raw answer: {literal(repr(err['raw']))}")
        with right:
            st.markdown("**Heuristics involved** (most similar first)")
            if not err["heuristics"]:
                st.caption(unattributed)
            for h in err["heuristics"]:
                number = f"{h['number']}. " if h["number"] else ""
                version = f" v{h['version']}" if h["version"] is not None else ""
                st.markdown(f"{number}#{h['id']}{version} (similarity {h['similarity']:.2f}):")
                st.text(h["text"] or "(deleted)")  # heuristic text: plain, never Markdown
                if h["version_now"] is None:
                    st.caption("Deleted since.")
                elif h["version_now"] != h["version"]:
                    st.caption(f"Changed since: now v{h['version_now']} (Heuristics page).")
            st.markdown(f"**Proposed changes** ({len(related)})")
            if not related:
                st.caption("No proposal touches these heuristics.")
            for p in related:
                _proposal_card(ws, p, me, prefix=f"c_err{err['example_id']}")


def _errors_tab(ws: Workspace, errors: list[dict[str, Any]], proposals: list[dict[str, Any]],
                me: Identity | None, record: dict[str, Any]) -> None:
    if not errors:
        st.success("The student made no errors on the validation items of this iteration.")
        return
    if proposals and st.toggle("Only errors that a proposal addresses", key="c_err_with_prop",
                               on_change=lambda: st.session_state.pop("c_error_page", None)):
        errors = [e for e in errors if _related(e, proposals)]
        if not errors:
            st.info("No error of this iteration is addressed by a proposal.")
            return
    pages = (len(errors) - 1) // PAGE_SIZE + 1
    page = 1
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1,
                                   key="c_error_page"))
    for err in errors[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
        _error_card(ws, err, proposals, me, _unattributed(record))


def _proposals_tab(ws: Workspace, proposals: list[dict[str, Any]],
                   me: Identity | None) -> None:
    if not proposals:
        st.info("No proposals for this iteration.")
        return
    for p in proposals:
        _proposal_card(ws, p, me, prefix="c_all")
        if p["evidence_examples"]:
            with st.expander(f"Evidence of proposal #{p['id']} "
                             f"({len(p['evidence_examples'])} examples)"):
                st.dataframe(pd.DataFrame([{
                    "example": e["id"], "gold": e["gold"], "predicted": _label(e["predicted"]),
                    "text": e["text"]} for e in p["evidence_examples"]]),
                    hide_index=True)


def main() -> None:
    """Draw the page."""
    ws, task, me = review_page(
        "Conflicts", "The student's validation errors, the heuristics they point to, and the "
        "teacher's proposed fixes. Accepted edits become drafts that someone else must "
        "approve; test items are never used here.",
        "accept or reject proposals")
    history = view.iteration_history(ws, task)
    failed = bool(history) and history[-1]["stop"] == state.TEACHER_FAILED
    if failed:
        last = history[-1]
        reasons = "; ".join(f"heuristic #{h}: {literal(e)}"
                            for h, e in last["failed_groups"].items())
        st.warning(f"Every teacher call of iteration {last['iteration']} failed, so the loop "
                   f"stopped and prompt v{last['best_version']} stands. {reasons} Running the "
                   "loop again asks the teacher again (a larger teacher model may be needed).")
    last, waiting = view.waiting_after_revert(ws, history)
    if last is not None:
        drafts = ", ".join(f"#{i}" for i in waiting)
        left = ", ".join(f"#{i}" for i in last["not_reverted"]) or "none"
        st.warning(f"Iteration {last['iteration']} scored lower, so the loop undid its own "
                   f"changes. The loop never approves: heuristics back at their earlier text "
                   f"as drafts, waiting for your approval on the Heuristics page: {drafts}. "
                   f"Changed by people since, left as they are: {left}.")
    _run_section(ws, task, bool(history), retry=failed)
    if not history:
        st.info(f"No conflict-loop iteration for task {literal(task)} yet. Approve some "
                "heuristics on the Heuristics page, then run the loop above.")
        return
    _chart(history)
    _history_table(history)
    iterations = [h["iteration"] for h in history]
    page.follow_newest("c_iteration", iterations, iterations[-1], scope=task)
    wanted = st.session_state.pop("_pld_open_iteration", None)
    if wanted in iterations:  # opened from the Home page's queue
        st.session_state["c_iteration"] = wanted
    k = st.selectbox("Iteration", iterations, key="c_iteration")
    proposals = view.list_proposals(ws, task, k)
    errors = view.errors_for_iteration(ws, task, k)
    pending = sum(p["status"] == state.PENDING for p in proposals)
    record = next(h for h in history if h["iteration"] == k)
    drafts = len(state.touched_heuristics(ws, task, k))
    st.info(view.stop_in_words(ws, record, pending, drafts))
    _prompt_of(ws, task, record)
    _dropped(record)
    if pending:
        st.info(f"{pending} proposal(s) of iteration {k} wait for a decision. After deciding, "
                "approve the resulting drafts on the Heuristics page and run the loop again.")
    t_errors, t_proposals = st.tabs([f"Errors ({len(errors)})",
                                     f"Proposals ({len(proposals)}, {pending} pending)"])
    with t_errors:
        _errors_tab(ws, errors, proposals, me, record)
    with t_proposals:
        _proposals_tab(ws, proposals, me)


main()
