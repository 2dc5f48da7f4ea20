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
from pld.pipeline.resolve import decisions, evidence, outcome, state, view
from pld.ui import diffs, page, sidebar
from pld.ui.acting import act, review_page
from pld.ui.escape import hover, literal, say
from pld.ui.launcher import Launch, job_section, start_controls
from pld.ui.tables import untrusted_table
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
        return (f"Accepted proposal #{pid}: the new text is a draft by {who.name}; "
                "someone else must approve it on the Heuristics page before the next iteration.")

    act(f"decide proposal #{pid}", run,
        refused=lambda e: f"Proposal #{pid} not decided: {e}")


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


# What the chart's colours and the history table's "adopted" column say, from one table so
# that the legend and the table cannot disagree: (table word, colour, colour name, meaning).
ADOPTION = {
    "first": ("first of its series", "#1565c0", "Blue",
              "the first iteration of a series, adopted because nothing before it compares"),
    "adopted": ("adopted", "#2e7d32", "Green",
                "adopted: better than its series' best beyond noise (paired 95% CI above zero), "
                "or within noise and made by people, who approved it"),
    "reverted": ("reverted", "#c62828", "Red",
                 "reverted: worse than its series' best beyond noise, or within noise and made "
                 "by the loop's automatic decisions"),
}


def _adoption(h: dict[str, Any]) -> str:
    if h["series_first"]:
        return "first"
    return "adopted" if h["adopted"] else "reverted"


def _series_name(h: dict[str, Any]) -> str:
    items = f", {h['val_limit']} validation items" if h.get("val_limit") else ""
    return f"series {h['series']}: {h['student']}{items}"


def _chart(history: list[dict[str, Any]]) -> None:
    fig = go.Figure()
    for n in sorted({h["series"] for h in history}):
        rows = [h for h in history if h["series"] == n]
        fig.add_trace(go.Scatter(
            # One line per series: a line between two students' scores would compare them.
            x=[h["iteration"] for h in rows], y=[h["macro_f1"] for h in rows],
            mode="lines+markers", name=hover(_series_name(rows[0]), width=200),
            marker={"size": 11, "color": [ADOPTION[_adoption(h)][1] for h in rows]},
            customdata=[[h["prompt_version"], h["n_errors"], ADOPTION[_adoption(h)][0]]
                        for h in rows],
            hovertemplate="iteration %{x}<br>macro-F1 %{y:.3f}<br>prompt v%{customdata[0]}"
                          "<br>errors %{customdata[1]}<br>%{customdata[2]}<extra></extra>",
        ))
    fig.update_layout(xaxis_title="iteration", yaxis_title="validation macro-F1",
                      xaxis={"dtick": 1}, yaxis={"range": [0, 1.02]}, height=320,
                      margin={"t": 30, "b": 30}, showlegend=True,
                      legend={"orientation": "h", "y": -0.3})
    st.plotly_chart(fig)
    st.caption("Each line is a series: one student on one set of validation items. Scores "
               "compare only within a series, which keeps its own best version. "
               + "; ".join(f"{colour}: {meaning}" for _, _, colour, meaning
                           in ADOPTION.values()) + ".")


def _versus(h: dict[str, Any]) -> str:
    """The comparison that decided adoption: its paired interval and verdict ("" for none)."""
    c = h.get("comparison") or {}
    if not c.get("ci"):
        return ""
    return f"[{delta_text(c['ci'][0])}, {delta_text(c['ci'][1])}] {c['verdict']}"


def _history_table(ws: Workspace, task: str, history: list[dict[str, Any]]) -> None:
    def stop(h: dict[str, Any]) -> str:
        drafts = (len(state.touched_heuristics(ws, task, h["iteration"]))
                  if h["series_last"] else 0)
        return view.stop_label(h, h["proposals_pending"] if h["series_last"] else 0, drafts)

    untrusted_table(pd.DataFrame([{
        "iteration": h["iteration"], "student": h["student"], "series": h["series"],
        "prompt": f"v{h['prompt_version']}",
        "macro-F1": score(h["macro_f1"]), "answers": h.get("metric", "raw"),
        "raw macro-F1": score(h.get("raw_macro_f1")),
        # Text, not a number: a series' first iteration has no best before it, and a browser
        # table shows a missing number as "None".
        "Δ vs best": delta_text(h["delta"]) if h["delta"] is not None else "",
        "paired 95% CI vs best": _versus(h),
        "errors": h["n_errors"],
        "adopted": ADOPTION[_adoption(h)][0], "best": f"v{h['best_version']}",
        "proposals": h["proposals_made"], "accepted": h["proposals_accepted"],
        "rejected": h["proposals_rejected"], "pending": h["proposals_pending"],
        "stop": stop(h),
    } for h in history]), "conflict-iterations.csv",
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


def _target(p: dict[str, Any]) -> str:
    return "a new heuristic" if p["kind"] == state.ADD else f"heuristic #{p['heuristic_id']}"


def _proposal_title(p: dict[str, Any]) -> str:
    return f"#{p['id']} ({p['kind']} {_target(p)}, {p['status']})"


def _examples_table(examples: list[dict[str, Any]], file_name: str) -> None:
    untrusted_table(pd.DataFrame([{
        "example": e["example_id"], "id": e["ext_id"], "gold": e["gold"],
        "predicted": _label(e["predicted"]), "error": e["error"], "cited": e["cited"],
        "text": e["text"]} for e in examples]), file_name,
        column_config={"text": st.column_config.TextColumn(width="large")})


def _proposal_card(ws: Workspace, p: dict[str, Any], errors: list[dict[str, Any]],
                   me: Identity | None) -> None:
    """One card per proposal: its change, the examples it is about, and its decision."""
    pid, kind = p["id"], p["kind"]
    with st.container(border=True):
        st.markdown(f"**Proposal #{pid}** · {kind} {_target(p)} · *{p['status']}*")
        if p["rationale"]:
            st.text(p["rationale"])  # the teacher's words: plain, never Markdown
        if p.get("measured"):  # the paired CI beside the proposal, for people to decide
            say("info" if p["measured"].get("verdict") == evidence.BETTER else "warning",
                evidence.measured_words(p["measured"]))
        if kind != state.ADD and p["heuristic"] is None:
            st.warning(f"Heuristic #{p['heuristic_id']} no longer exists.")
        st.html(_change_html(p))
        examples = view.addressed_examples(p, errors)
        st.caption(f"Examples it is about ({len(examples)}): the errors of the heuristic it "
                   "changes, and the examples the teacher cited.")
        if examples:
            _examples_table(examples, f"proposal-{pid}-examples.csv")
        if p["status"] != state.PENDING:
            made = (f" (created heuristic #{p['created_heuristic_id']})"
                    if p.get("created_heuristic_id") else "")
            st.caption(f"{p['status']} by {literal(p['decided_by'])} at {p['decided_at']}{made}")
            return
        # Per person: a comment typed under one name is never recorded under another.
        comment_key = f"c_comment_{pid}_{me.name if me else ''}"
        st.text_input("Comment", key=comment_key, disabled=me is None)
        c1, c2 = st.columns(2)
        c1.button("Accept", key=f"c_accept_{pid}", type="primary", disabled=me is None,
                  on_click=_decide, args=(ws, pid, True, comment_key))
        c2.button("Reject", key=f"c_reject_{pid}", disabled=me is None,
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
    """The proposals that address an error."""
    return [p for p in proposals if view.addresses(p, err)]


def _proposal_refs(proposals: list[dict[str, Any]], what: str) -> None:
    """Which proposals address ``what``, by number: they are decided in the Proposals tab,
    where each is drawn once."""
    if proposals:
        st.caption(f"Proposals that address {what}: "
                   + ", ".join(_proposal_title(p) for p in proposals)
                   + ". Decide them in the Proposals tab.")
    else:
        st.caption(f"No proposal addresses {what}.")


def _heuristic_lines(h: dict[str, Any]) -> None:
    number = f"{h['number']}. " if h["number"] else ""
    version = f" v{h['version']}" if h["version"] is not None else ""
    similarity = f" (similarity {h['similarity']:.2f})" if "similarity" in h else ""
    st.markdown(f"{number}#{h['id']}{version}{similarity}:")
    st.text(h["text"] or "(deleted)")  # heuristic text: plain, never Markdown
    if h["version_now"] is None:
        st.caption("Deleted since.")
    elif h["version_now"] != h["version"]:
        st.caption(f"Changed since: now v{h['version_now']} (Heuristics page).")


def _error_card(err: dict[str, Any], proposals: list[dict[str, Any]],
                unattributed: str) -> None:
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
                _heuristic_lines(h)
            _proposal_refs(_related(err, proposals), "this error")


def _heuristic_group(h: dict[str, Any] | None, errors: list[dict[str, Any]],
                     proposals: list[dict[str, Any]], unattributed: str) -> None:
    """One heuristic with the errors attributed to it (None: the errors with none)."""
    with st.container(border=True):
        if h is None:
            st.markdown(f"**No heuristic attributed** · {len(errors)} error(s)")
            st.caption(unattributed)
        else:
            st.markdown(f"**Heuristic #{h['id']}** · {len(errors)} error(s)")
            _heuristic_lines({k: v for k, v in h.items() if k != "similarity"})
        untrusted_table(pd.DataFrame([{
            "example": e["example_id"], "id": e["ext_id"], "gold": e["gold"],
            "predicted": _label(e["predicted"]),
            **({"similarity": round(e["similarity"], 2)} if h is not None else {}),
            "text": e["text"]} for e in errors]),
            f"errors-of-heuristic-{h['id']}.csv" if h is not None else "errors-unattributed.csv",
            column_config={"text": st.column_config.TextColumn(width="large")})
        if h is not None:
            on_it = [p for p in proposals
                     if p["heuristic_id"] == h["id"]
                     or any(e["example_id"] in p["evidence"] for e in errors)]
            _proposal_refs(on_it, "these errors")


def _paged(items: list[Any], what: str) -> list[Any]:
    """The page of ``items`` the reviewer chose, ten to a page."""
    pages = (len(items) - 1) // PAGE_SIZE + 1
    n = 1
    if pages > 1:
        n = int(st.number_input(f"Page of {what} (of {pages})", min_value=1, max_value=pages,
                                value=1, key="c_error_page"))
    return items[(n - 1) * PAGE_SIZE: n * PAGE_SIZE]


def _errors_tab(errors: list[dict[str, Any]], proposals: list[dict[str, Any]],
                record: dict[str, Any]) -> None:
    if not errors:
        st.success("The student made no errors on the validation items of this iteration.")
        return

    def first_page() -> None:
        st.session_state.pop("c_error_page", None)

    arrange = st.radio("Arrange", ["one by one", "by heuristic"], key="c_err_arrange",
                       horizontal=True, on_change=first_page)
    if proposals and st.toggle("Only errors that a proposal addresses", key="c_err_with_prop",
                               on_change=first_page):
        errors = [e for e in errors if _related(e, proposals)]
        if not errors:
            st.info("No error of this iteration is addressed by a proposal.")
            return
    unattributed = _unattributed(record)
    if arrange == "by heuristic":
        for h, group in _paged(view.errors_by_heuristic(errors), "heuristics"):
            _heuristic_group(h, group, proposals, unattributed)
        return
    for err in _paged(errors, "errors"):
        _error_card(err, proposals, unattributed)


def _proposals_tab(ws: Workspace, proposals: list[dict[str, Any]],
                   errors: list[dict[str, Any]], me: Identity | None) -> None:
    if not proposals:
        st.info("No proposals for this iteration.")
        return
    for p in proposals:
        _proposal_card(ws, p, errors, me)


def main() -> None:
    """Draw the page."""
    ws, task, me = review_page(
        "Conflicts", "The student's validation errors, the heuristics they point to, and the "
        "teacher's proposed fixes. Accepted edits become drafts that someone else must "
        "approve; test items are never used here.",
        "accept or reject proposals")
    history = view.iteration_history(ws, task)
    statement = outcome.no_heuristic_helped(ws, task)
    if statement:  # an outcome, not an error
        say("info", statement)
    failed = bool(history) and history[-1]["stop"] == state.TEACHER_FAILED
    if failed:
        last = history[-1]
        reasons = "; ".join(f"heuristic #{h}: {e}" for h, e in last["failed_groups"].items())
        say("warning", f"Every teacher call of iteration {last['iteration']} failed, so the "
                       f"loop stopped and prompt v{last['best_version']} stands. {reasons} "
                       "Running the loop again asks the teacher again (a larger teacher model "
                       "may be needed).")
    last, waiting = view.waiting_after_revert(ws, history)
    if last is not None:
        drafts = ", ".join(f"#{i}" for i in waiting)
        left = ", ".join(f"#{i}" for i in last["not_reverted"]) or "none"
        verdict = (last.get("comparison") or {}).get("verdict") or "worse"
        st.warning(f"Iteration {last['iteration']} was not adopted (against the best version: "
                   f"{verdict}), so the loop undid its own changes. The loop never approves: "
                   f"heuristics back at their earlier text as drafts, waiting for your "
                   f"approval on the Heuristics page: {drafts}. "
                   f"Changed by people since, left as they are: {left}.")
    _run_section(ws, task, bool(history), retry=failed)
    if not history:
        say("info", f"No conflict-loop iteration for task {task} yet. Approve some "
                    "heuristics on the Heuristics page, then run the loop above.")
        return
    _chart(history)
    _history_table(ws, task, history)
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
    compared = evidence.comparison_words(record)
    if compared:
        say("info", compared)
    _prompt_of(ws, task, record)
    _dropped(record)
    if pending:
        st.info(f"{pending} proposal(s) of iteration {k} wait for a decision. After deciding, "
                "approve the resulting drafts on the Heuristics page and run the loop again.")
    t_errors, t_proposals = st.tabs([f"Errors ({len(errors)})",
                                     f"Proposals ({len(proposals)}, {pending} pending)"])
    with t_errors:
        _errors_tab(errors, proposals, record)
    with t_proposals:
        _proposals_tab(ws, proposals, errors, me)


main()
