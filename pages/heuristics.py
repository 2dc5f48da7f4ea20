"""Heuristics: consolidate clusters into draft heuristics, then review them.

Every action goes through :mod:`pld.review` as the reviewer named in the sidebar. Buttons act in
``on_click`` callbacks whose arguments are bound when the page is drawn, so an approval or an
edit carries the version the reviewer was looking at: if someone else changed the heuristic in
between, review refuses it as stale instead of silently overwriting.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld import jobs, review
from pld.errors import BadInput
from pld.numbers import delta_text, score, score_text
from pld.pipeline import impact
from pld.ui import diffs, page, sidebar
from pld.ui.plain import literal
from pld.ui.preamble_view import preamble_panel
from pld.workspace import Workspace


def _actor() -> sidebar.Identity | None:
    who = sidebar.identity()
    if who is None:
        page.flash("error", "Nobody is identified: enter your name in the sidebar (or log in) "
                            "first.")
    return who


def _short(text: str, n: int = 80) -> str:
    one = " ".join((text or "").split())
    return one if len(one) <= n else one[: n - 1] + "…"


# -- callbacks ------------------------------------------------------------------------------------

def _key(part: str, hid: int) -> str:
    """The session key of one person's unsaved work on heuristic ``hid`` (editor text, base,
    refused edit): keyed by the reviewer, so switching names never carries it over."""
    me = sidebar.identity()
    return f"h_{part}_{hid}_{me.name if me else ''}"


def _comment_key(hid: int, name: str) -> str:
    # Per person: a comment bob typed must not be recorded with alice's decision.
    return f"h_comment_{hid}_{name}"


def _decide(ws: Workspace, hid: int, version: int, action: str) -> None:
    who = _actor()
    if who is None:
        return
    comment = (st.session_state.get(_comment_key(hid, who.name)) or "").strip() or None
    act = review.approve if action == "approve" else review.reject
    try:
        row = act(ws, hid, who.name, base_version=version, identity_kind=who.kind,
                  comment=comment)
    except review.FourEyes as e:
        page.flash("error", f"Four-eyes rule: {e}")
    except review.NotApprover as e:
        page.flash("error", f"Not an approver: {e}")
    except review.StaleEdit as e:
        page.flash("error", f"Not {action}d: {e}")
    except BadInput as e:
        page.flash("error", str(e))
    else:
        st.session_state[_comment_key(hid, who.name)] = ""
        page.flash("success", f"Heuristic #{hid} {row['status']} by {literal(who.name)} "
                              f"({who.kind}); "
                              f"now version {row['version']}.")


def _open_edit(hid: int, version: int, text: str) -> None:
    st.session_state[_key("edit_base", hid)] = {"version": version, "text": text}
    st.session_state[_key("edit_text", hid)] = text
    st.session_state.pop(_key("stale", hid), None)


def _close_edit(hid: int) -> None:
    for key in (_key("edit_base", hid), _key("edit_text", hid), _key("edit_comment", hid),
                _key("edit_mine", hid), _key("edit_kept", hid)):
        st.session_state.pop(key, None)


def _save_edit(ws: Workspace, hid: int) -> None:
    who = _actor()
    base = st.session_state.get(_key("edit_base", hid))
    if who is None or base is None:
        return
    text = st.session_state.get(_key("edit_text", hid)) or ""
    comment = (st.session_state.get(_key("edit_comment", hid)) or "").strip() or None
    try:
        row = review.edit(ws, hid, text, who.name, base_version=base["version"],
                          identity_kind=who.kind, comment=comment)
    except review.StaleEdit as e:
        theirs = e.theirs or {}
        st.session_state[_key("stale", hid)] = {
            "mine": text, "base_version": base["version"], "base_text": base["text"],
            "message": str(e),
            "theirs": e.current["text"], "version": e.current["version"],
            "status": e.current["status"], "who": theirs.get("who"),
            "action": theirs.get("action"), "at": theirs.get("created_at"),
        }
        _close_edit(hid)
        page.flash("error", f"Not saved: {e}")
    except BadInput as e:
        page.flash("error", f"Not saved: {e}")
    else:
        _close_edit(hid)
        page.flash("success", f"Saved heuristic #{hid} as version {row['version']} (a draft: "
                              f"someone other than {who.name} must approve it).")


def _redo_on_theirs(hid: int) -> None:
    """Reopen the editor on *their* text (the current version), keeping the reviewer's refused
    text beside it: starting from their text, saving cannot silently undo their change."""
    stale = st.session_state.pop(_key("stale", hid), None)
    if stale is not None:
        st.session_state[_key("edit_base", hid)] = {"version": stale["version"],
                                                  "text": stale["theirs"]}
        st.session_state[_key("edit_text", hid)] = stale["theirs"]
        st.session_state[_key("edit_mine", hid)] = {"text": stale["mine"],
                                                  "base_text": stale.get("base_text", ""),
                                                  "base_version": stale["base_version"]}


def _discard_stale(hid: int) -> None:
    st.session_state.pop(_key("stale", hid), None)


def _add_approver(ws: Workspace, task: str) -> None:
    who = _actor()
    name = (st.session_state.get("h_new_approver") or "").strip()
    if who is None:
        return
    try:
        added = review.add_approver(ws, task, name, who.name, identity_kind=who.kind)
    except BadInput as e:
        page.flash("error", f"Approver not added: {e}")
    else:
        st.session_state["h_new_approver"] = ""
        page.flash("success" if added else "warning",
                   f"{name} is now an approver of {task}." if added
                   else f"{name} is already an approver of {task}.")


def _comment(key: str) -> str | None:
    return (st.session_state.get(key) or "").strip() or None


def _open_heuristic(hid: int) -> None:
    """Select ``hid`` in the page's list (a new draft: make sure the filter shows it)."""
    if st.session_state.get("h_filter") not in (None, "all", review.DRAFT):
        st.session_state["h_filter"] = "all"
    st.session_state["h_selected"] = hid


def _split_keys(hid: int, version: int) -> list[str]:
    n = int(st.session_state.get(f"h_split_n_{hid}") or 2)
    return [f"h_split_{hid}_v{version}_{i}" for i in range(n)]


def _split(ws: Workspace, hid: int, version: int) -> None:
    who = _actor()
    if who is None:
        return
    keys = _split_keys(hid, version)
    texts = [st.session_state.get(k) or "" for k in keys]
    try:
        new = review.split_heuristic(ws, hid, texts, who.name, base_version=version,
                                     identity_kind=who.kind,
                                     comment=_comment(f"h_split_comment_{hid}"))
    except review.StaleEdit as e:
        page.flash("error", f"Not split: {e}")
    except BadInput as e:
        page.flash("error", f"Not split: {e}")
    else:
        for key in [*keys, f"h_split_comment_{hid}", f"h_split_n_{hid}"]:
            st.session_state.pop(key, None)
        _open_heuristic(new[0])
        page.flash("success", f"Split #{hid} into {', '.join(f'#{i}' for i in new)}: drafts "
                              f"that someone other than {who.name} must approve.")


def _fill_merge_text(texts: dict[int, str]) -> None:
    """Start the merged text from the chosen heuristics' texts, unless the reviewer typed."""
    current = st.session_state.get("h_merge_text") or ""
    if current.strip() and current != st.session_state.get("_h_merge_auto"):
        return
    ids = st.session_state.get("h_merge_ids") or []
    auto = "\n".join(texts[i] for i in ids if i in texts)
    st.session_state["h_merge_text"] = st.session_state["_h_merge_auto"] = auto


def _merge(ws: Workspace, versions: dict[int, int]) -> None:
    who = _actor()
    if who is None:
        return
    ids = [int(i) for i in st.session_state.get("h_merge_ids") or []]
    try:
        # The versions the reviewer saw: a heuristic changed since is refused as stale.
        new = review.merge_heuristics(ws, ids, st.session_state.get("h_merge_text") or "",
                                      who.name, base_versions={i: versions[i] for i in ids},
                                      identity_kind=who.kind,
                                      comment=_comment("h_merge_comment"))
    except review.StaleEdit as e:
        page.flash("error", f"Not merged: {e}")
    except BadInput as e:
        page.flash("error", f"Not merged: {e}")
    else:
        st.session_state["h_merge_ids"] = []
        for key in ("h_merge_text", "h_merge_comment", "_h_merge_auto"):
            st.session_state.pop(key, None)
        _open_heuristic(new)
        page.flash("success", f"Merged {', '.join(f'#{i}' for i in sorted(set(ids)))} into "
                              f"draft #{new}; someone other than {who.name} must approve it.")


def _create(ws: Workspace, task: str) -> None:
    who = _actor()
    if who is None:
        return
    try:
        new = review.create_heuristic(ws, task, st.session_state.get("h_new_text") or "",
                                      who.name, identity_kind=who.kind,
                                      comment=_comment("h_new_comment"))
    except BadInput as e:
        page.flash("error", f"Not added: {e}")
    else:
        for key in ("h_new_text", "h_new_comment"):
            st.session_state.pop(key, None)
        _open_heuristic(new)
        page.flash("success", f"Added draft heuristic #{new}; someone other than {who.name} "
                              "must approve it.")


def _remove_approver(ws: Workspace, task: str) -> None:
    who = _actor()
    name = st.session_state.get("h_remove_approver")
    if who is None or not name:
        return
    try:
        removed = review.remove_approver(ws, task, name, who.name, identity_kind=who.kind)
    except BadInput as e:
        page.flash("error", f"Approver not removed: {e}")
    else:
        left = review.list_approvers(ws, task)
        after = "" if left else " The list is empty: anyone may approve again."
        page.flash("success" if removed else "warning",
                   (f"{name} is no longer an approver of {task}.{after}" if removed
                    else f"{name} was not an approver of {task}."))


def _consolidate_args(task: str, teacher: str) -> list[str]:
    """The consolidate command the section's settings stand for."""
    merge = st.session_state.get("h_merge_mode", "all")
    args = ["consolidate", task, "--teacher", teacher]
    args += [] if merge == "all" else ["--merge", merge]
    if st.session_state.get("h_retry_failed"):
        args.append("--retry-failed")
    if st.session_state.get("h_batch"):
        args.append("--batch")
    return args


def _start_consolidate(ws: Workspace, task: str, teacher: str) -> None:
    extra = []
    me = sidebar.identity()
    if me is not None:
        # The drafts count as the starter's: someone else must approve them (four-eyes).
        extra += ["--as", me.name]
    try:
        job = jobs.start(ws.path, [*_consolidate_args(task, teacher), *extra],
                         **page.acting())
    except (BadInput, OSError) as e:
        page.flash("error", f"Could not start consolidate: {e}")
    else:
        page.flash("success", f"Consolidation started in the background ({job.describe()}).")


# -- drawing --------------------------------------------------------------------------------------

MERGE_MODES = {"all": "teacher merges all rules (paper)",
               "by-label": "teacher merges each label apart",
               "medoid": "most typical rule per label (no teacher call)"}


def _consolidate_section(ws: Workspace, task: str, empty: bool) -> None:
    teacher = sidebar.model("teacher")
    with st.expander("Consolidate clusters into heuristics", expanded=empty):
        st.write(f"The teacher `{teacher}` merges each cluster's rules into one draft heuristic, "
                 "keeping minority labels and edge cases explicit. Clusters that already have "
                 "a heuristic are skipped, so running it again only fills the gaps; clusters "
                 "whose reply was unusable stay failed unless you ask for them again.")
        st.radio("How a cluster becomes a heuristic", list(MERGE_MODES), key="h_merge_mode",
                 format_func=MERGE_MODES.get, horizontal=True,
                 help="The paper lets the teacher merge all of a cluster's rules. A small "
                      "teacher tends to keep one odd rule and drop the minority labels: merging "
                      "each label apart, or keeping each label's most typical rule, avoids that.")
        st.checkbox("Ask the failed clusters again", key="h_retry_failed")
        page.batch_checkbox("h_batch", [teacher])
        busy = page.is_busy(ws, task, "consolidate")
        page.estimate_button(ws, _consolidate_args(task, teacher), "h_estimate")
        st.button("Consolidate", key="h_consolidate", type="primary", disabled=busy,
                  on_click=_start_consolidate, args=(ws, task, teacher),
                  help="Runs `python -m pld consolidate` in the background.")
    page.jobs_panel(ws, task, "consolidate")  # outside: collapsed once heuristics exist


def _start_impact(ws: Workspace, task: str, student: str) -> None:
    try:
        job = jobs.start(ws.path, ["review", "impact", task, "--student", student],
                         **page.acting())
    except (BadInput, OSError) as e:
        page.flash("error", f"Could not start the measurement: {e}")
    else:
        page.flash("success", f"Measuring each heuristic's effect in the background "
                              f"({job.describe()}).")


def _impact_section(ws: Workspace, task: str) -> None:
    student = sidebar.model("student")
    report = impact.latest_impact(ws, task)
    with st.expander("Measured effect on the student (evidence per heuristic)",
                     expanded=report is not None):
        st.write(f"The student `{student}` answers the validation split with all approved "
                 "heuristics, without each one in turn, and with none. A heuristic's effect is "
                 "validation macro-F1 with it minus without it (paired bootstrap 95% CI); it "
                 "*fixes* answers that are right only with it and *breaks* answers that are "
                 "right only without it. Harmful ones come first.")
        busy = page.is_busy(ws, task, "impact")
        st.button("Measure the approved heuristics", key="h_impact", disabled=busy,
                  on_click=_start_impact, args=(ws, task, student),
                  help="Runs `python -m pld review impact` in the background; every prompt is "
                       "one pass over the validation split (cached calls are free).")
        if report is None:
            st.caption("Not measured yet.")
        else:
            _impact_report(report)
    page.jobs_panel(ws, task, "impact")


def _impact_report(report: dict[str, Any]) -> None:
    key = "calibrated_macro_f1" if report["metric"] == "calibrated" else "macro_f1"
    if not report.get("current"):
        st.warning("Measured on an earlier set of approved heuristics: measure again to see "
                   "the current set.")
    c1, c2, c3 = st.columns(3)
    c1.metric("All approved heuristics", score_text(report['full'][key]))
    c2.metric("No heuristics", score_text(report['no_rules'][key]),
              delta=delta_text(report['no_rules'][key] - report['full'][key]))
    c3.metric("Harmful heuristics", sum(h["harmful"] for h in report["heuristics"]))
    st.caption(f"Student {report['student']} · {report['n_val']} validation items · "
               f"{report['metric']} answers (macro-F1) · measured {report['created_at']}")
    st.dataframe(pd.DataFrame([{
        "#": h["number"], "id": h["heuristic_id"], "effect": score(h["effect"]),
        "CI low": score((h["ci"] or [None, None])[0]),
        "CI high": score((h["ci"] or [None, None])[1]),
        "fixes": len(h["fixes"]), "breaks": len(h["breaks"]),
        "F1 without": score(h["without"].get(key)), "harmful": h["harmful"], "text": h["text"],
    } for h in report["heuristics"]]), hide_index=True,
        column_config={**{k: st.column_config.NumberColumn(format="%+.3f")
                          for k in ("effect", "CI low", "CI high")},
                       "F1 without": st.column_config.NumberColumn(format="%.3f"),
                       "text": st.column_config.TextColumn(width="large")})


def _approvers_section(ws: Workspace, task: str, me: sidebar.Identity | None) -> list[str]:
    approvers = review.list_approvers(ws, task)
    with st.expander(f"Approvers ({len(approvers) or 'anyone'})"):
        if approvers:
            st.write("Only these people may approve or reject heuristics of this task (others "
                     "may still edit, merge, split and comment): "
                     + ", ".join(f"**{a}**" for a in approvers))
        else:
            st.write("No approver list: anyone except a heuristic's last editor may approve. "
                     "Adding a name restricts approval to the list.")
        may_add = me is not None and (not approvers or me.name in approvers)
        st.text_input("Add an approver", key="h_new_approver", disabled=not may_add)
        st.button("Add approver", key="h_add_approver", disabled=not may_add,
                  on_click=_add_approver, args=(ws, task))
        if me is not None and not may_add:
            st.caption(f"Only approvers can add or remove names; {literal(me.name)} is not on "
                       "the list.")
        if approvers:
            may_remove = me is not None and me.name in approvers
            if st.session_state.get("h_remove_approver") not in approvers:
                st.session_state.pop("h_remove_approver", None)  # removed meanwhile
            st.selectbox("Remove an approver", approvers, key="h_remove_approver",
                         disabled=not may_remove)
            st.button("Remove approver", key="h_remove_approver_btn", disabled=not may_remove,
                      on_click=_remove_approver, args=(ws, task),
                      help="Removing the last name lets anyone approve again.")
    return approvers


def _merge_section(ws: Workspace, rows: list[dict[str, Any]],
                   me: sidebar.Identity | None) -> None:
    live = [r for r in rows if r["status"] in review.LIVE]
    with st.expander("Merge heuristics"):
        if len(live) < 2:
            st.caption("Merging needs at least two draft, approved or rejected heuristics.")
            return
        st.write("Replace several heuristics by one draft whose sources are all of theirs; the "
                 "old ones become *merged* and leave the prompt.")
        versions = {r["id"]: r["version"] for r in live}
        texts = {r["id"]: r["text"] for r in live}
        # Merged or split since: drop them from the choice before the widget is drawn.
        if "h_merge_ids" in st.session_state:
            st.session_state["h_merge_ids"] = [
                i for i in st.session_state["h_merge_ids"] if i in versions]
        st.multiselect("Heuristics to merge", list(versions), key="h_merge_ids",
                       format_func=lambda i: f"#{i} · {_short(texts[i], 60)}",
                       on_change=_fill_merge_text, args=(texts,), disabled=me is None)
        st.text_area("Merged text", key="h_merge_text", height=140, disabled=me is None)
        st.text_input("Comment", key="h_merge_comment", disabled=me is None)
        st.button("Merge", key="h_merge", on_click=_merge, args=(ws, versions),
                  disabled=me is None)


def _create_section(ws: Workspace, task: str, me: sidebar.Identity | None) -> None:
    with st.expander("Write a new heuristic"):
        st.text_area("Text", key="h_new_text", height=100, disabled=me is None)
        st.text_input("Comment", key="h_new_comment", disabled=me is None)
        st.button("Add draft", key="h_new", on_click=_create, args=(ws, task),
                  disabled=me is None, help="You are its author, so someone else must approve "
                                            "it.")


def _overview(rows: list[dict[str, Any]]) -> None:
    counts = pd.Series([r["status"] for r in rows]).value_counts()
    cols = st.columns(len(review.STATUSES))
    for col, status in zip(cols, review.STATUSES, strict=True):
        col.metric(status.title(), int(counts.get(status, 0)))


def _table(rows: list[dict[str, Any]]) -> None:
    st.dataframe(pd.DataFrame([{
        "id": r["id"], "status": r["status"], "version": r["version"],
        "text": r["text"], "sources": len(r["source_rule_ids"]),
        "last edited by": r["updated_by"] or r["created_by"],
        "approved by": r["approved_by"] or "",
    } for r in rows]), hide_index=True,
        column_config={"text": st.column_config.TextColumn(width="large")})


def _last_change(hist: list[dict[str, Any]], h: dict[str, Any]) -> None:
    for r in reversed(hist):
        before, after = r["before"] or {}, r["after"] or {}
        if before.get("text") is not None and before.get("text") != after.get("text"):
            st.caption(f"Last text change: v{before.get('version')} → v{after.get('version')} "
                       f"by {literal(r['who'])} ({r['identity_kind']}, {r['action']}) at "
                       f"{r['created_at']}")
            st.html(diffs.diff_html(before["text"], after["text"]))
            return
    st.caption(f"Original text, written by {literal(h['created_by'])}.")


def _review_tab(ws: Workspace, h: dict[str, Any], me: sidebar.Identity | None,
                approvers: list[str]) -> None:
    hid, status = h["id"], h["status"]
    if me is None:
        st.info("Enter your name in the sidebar (or log in) to approve or reject.")
    elif approvers and me.name not in {review.normalize_name(a) for a in approvers}:
        st.info(f"{literal(me.name)} is not on this task's approver list: you can edit and "
                "comment, not approve or reject.")
    elif review.normalize_name(h["updated_by"] or "") == me.name and status != review.APPROVED:
        st.warning(f"You ({literal(me.name)}) wrote the current text: the four-eyes rule needs "
                   "someone else to approve it.")
    st.text_input("Comment (recorded with the decision)",
                  key=_comment_key(hid, me.name if me else ""), disabled=me is None)
    # Off before the click, with the reason the refusal would give, not refused after it.
    off = {a: "Enter your name in the sidebar (or log in) first." if me is None
           else review.sign_off_refusal(ws, h, me.name, me.kind, a)
           for a in ("approve", "reject")}
    c1, c2 = st.columns(2)
    c1.button("Approve", key=f"h_approve_{hid}", type="primary", disabled=bool(off["approve"]),
              help=off["approve"], on_click=_decide, args=(ws, hid, h["version"], "approve"))
    c2.button("Reject", key=f"h_reject_{hid}", disabled=bool(off["reject"]),
              help=off["reject"], on_click=_decide, args=(ws, hid, h["version"], "reject"))
    if me is not None:
        st.caption(f"Signing as **{literal(me.name)}** ({me.kind}).")


def _three_way(base_version: int, base_text: str, theirs_label: str, theirs: str,
               mine: str) -> None:
    """Base, theirs and mine side by side, each change marked against the base."""
    b, t, m = st.columns(3)
    with b:
        st.markdown(f"**Base** (v{base_version}, what you started from)")
        st.code(base_text, language=None, wrap_lines=True)
    with t:
        st.markdown(f"**Theirs** ({theirs_label})")
        st.html(diffs.diff_html(base_text, theirs))
    with m:
        st.markdown("**Yours** (not saved)")
        st.html(diffs.diff_html(base_text, mine))


def _stale_view(hid: int, stale: dict[str, Any]) -> None:
    """Drawn above the tabs, so the refused text is in front of the reviewer, not one click
    away; nothing of theirs or yours is lost until they choose."""
    st.error(f"Your edit was not saved: {stale['message']}")
    by = f" by {literal(stale['who'])} ({stale['action']})" if stale["who"] else ""
    _three_way(stale["base_version"], stale.get("base_text", ""),
               f"v{stale['version']}, {stale['status']}{by}", stale["theirs"], stale["mine"])
    c1, c2 = st.columns(2)
    c1.button("Redo mine on theirs", key=f"h_redo_{hid}", on_click=_redo_on_theirs,
              args=(hid,), type="primary",
              help="Opens the editor on their text (the current version), with yours beside "
                   "it to carry your change over; nothing is saved until you save.")
    c2.button("Discard my text", key=f"h_discard_{hid}", on_click=_discard_stale, args=(hid,))


def _edit_tab(h: dict[str, Any], me: sidebar.Identity | None) -> None:
    hid = h["id"]
    if st.session_state.get(_key("stale", hid)) is not None:
        st.caption("Your refused edit is shown above the tabs.")
        return
    if h["status"] not in review.LIVE:
        st.info(f"This heuristic is {h['status']}; it can no longer be edited.")
        return
    if me is not None and st.session_state.get(_key("edit_base", hid)) is not None:
        st.caption("The editor is open above the tabs.")
        return
    if me is None:
        st.info("Enter your name in the sidebar (or log in) to edit.")
    st.button("Edit this heuristic", key=f"h_open_edit_{hid}", on_click=_open_edit,
              args=(hid, h["version"], h["text"]), disabled=me is None)


def _editor(ws: Workspace, h: dict[str, Any], base: dict[str, Any]) -> None:
    """The open editor, above the tabs (a rerun shows the first tab again)."""
    hid = h["id"]
    mine = st.session_state.get(_key("edit_mine", hid))
    if mine is not None:
        st.info("Redoing your change on their version: the box starts from their text. Carry "
                "your change over, then save.")
        _three_way(mine["base_version"], mine["base_text"], f"v{base['version']}, now",
                   base["text"], mine["text"])
    st.caption(f"Editing from version {base['version']}. Saving makes it a draft that someone "
               "else must approve.")
    text_key, kept_key = _key("edit_text", hid), _key("edit_kept", hid)
    # Streamlit forgets a widget's value while it is not drawn (another reviewer's name in
    # the sidebar): a copy outside the widget brings the unsaved text back.
    if text_key not in st.session_state and kept_key in st.session_state:
        st.session_state[text_key] = st.session_state[kept_key]
    st.text_area("Text", key=text_key, height=160)
    st.session_state[kept_key] = st.session_state.get(text_key)
    st.text_input("Comment", key=_key("edit_comment", hid))
    new = st.session_state.get(_key("edit_text", hid)) or ""
    spans = diffs.word_diff(base["text"], new)
    if diffs.changed(spans):
        st.caption(f"Your change against version {base['version']}:")
        st.html(diffs.spans_html(spans))
    c1, c2 = st.columns(2)
    c1.button("Save", key=f"h_save_{hid}", type="primary", on_click=_save_edit, args=(ws, hid))
    c2.button("Cancel", key=f"h_cancel_{hid}", on_click=_close_edit, args=(hid,))


def _split_tab(ws: Workspace, h: dict[str, Any], me: sidebar.Identity | None) -> None:
    hid, version = h["id"], h["version"]
    if h["status"] not in review.LIVE:
        st.info(f"This heuristic is {h['status']}; it can no longer be split.")
        return
    if me is None:
        st.info("Enter your name in the sidebar (or log in) to split.")
    st.caption("Replace this heuristic by several drafts, each keeping all its sources; this "
               "one becomes *split* and leaves the prompt.")
    st.number_input("Parts", min_value=2, max_value=6, value=2, key=f"h_split_n_{hid}",
                    disabled=me is None)
    # The version is in the keys: parts prefilled from an older text must not survive an edit.
    for i, key in enumerate(_split_keys(hid, version)):
        st.text_area(f"Part {i + 1}", value=h["text"], key=key, height=100,
                     disabled=me is None)
    st.text_input("Comment", key=f"h_split_comment_{hid}", disabled=me is None)
    st.button("Split", key=f"h_split_{hid}", on_click=_split, args=(ws, hid, version),
              disabled=me is None)


def _sources_tab(h: dict[str, Any]) -> None:
    if not h["sources"]:
        st.caption("No source rules (written by hand or added by the conflict loop).")
        return
    st.dataframe(pd.DataFrame([{
        "rule": s["rule_id"], "micro-instruction": s["rule"], "leads to": s["rule_label"],
        "example": s["ext_id"], "split": s["split"], "gold label": s["gold_label"],
        "example text": s["example_text"],
    } for s in h["sources"]]), hide_index=True)


def _history_tab(hist: list[dict[str, Any]]) -> None:
    for r in reversed(hist):
        before, after = r["before"] or {}, r["after"] or {}
        version = f"v{before.get('version', '–')} → v{after.get('version', '–')}"
        st.markdown(f"**{r['action']}** by {literal(r['who'])} ({r['identity_kind']}) · "
                    f"{r['created_at']} · {version}")
        if r["comment"]:
            # Plain text: a Markdown comment could forge an "approve by alice" line.
            st.text(f"comment: {r['comment']}")
        if before.get("text") is not None and before.get("text") != after.get("text"):
            st.html(diffs.diff_html(before["text"], after.get("text") or ""))


def _detail(ws: Workspace, hid: int, me: sidebar.Identity | None, approvers: list[str]) -> None:
    h = review.get_heuristic(ws, hid)
    hist = review.history(ws, hid)
    st.subheader(f"Heuristic #{hid}")
    approved = (f" · approved by {literal(h['approved_by'])} ({h['identity_kind']})"
                if h["approved_by"] else "")
    st.caption(f"{h['status']} · version {h['version']} · origin {h['origin'] or '–'} · "
               f"created by {literal(h['created_by'])} · last edited by "
               f"{literal(h['updated_by'] or h['created_by'])}{approved}")
    # Exactly as written: Markdown here could fake badges and links, or hide reference lines
    # that stay in the prompt.
    st.code(h["text"], language=None, wrap_lines=True)
    _last_change(hist, h)
    stale = st.session_state.get(_key("stale", hid))
    base = st.session_state.get(_key("edit_base", hid))
    if stale is not None:
        _stale_view(hid, stale)
    elif me is not None and base is not None and h["status"] in review.LIVE:
        with st.container(border=True):
            _editor(ws, h, base)
    t_review, t_edit, t_split, t_sources, t_history = st.tabs(
        ["Review", "Edit", "Split", f"Sources ({len(h['sources'])})", f"History ({len(hist)})"])
    with t_review:
        _review_tab(ws, h, me, approvers)
    with t_edit:
        _edit_tab(h, me)
    with t_split:
        _split_tab(ws, h, me)
    with t_sources:
        _sources_tab(h)
    with t_history:
        _history_tab(hist)


def main() -> None:
    """Draw the page."""
    st.title("Heuristics")
    ws, task = page.setup()
    if ws is None or not page.need_task(task):
        return
    assert task is not None
    st.caption("Each heuristic merges one cluster of micro-instructions. Only approved "
               "heuristics enter the student's prompt; whoever last wrote a heuristic's text "
               "cannot approve it (four-eyes).")
    me = sidebar.identity()
    if me is None:
        st.warning("Nobody is identified: enter your name in the sidebar (or log in) to edit, "
                   "approve or reject. Those buttons stay disabled until then.")
    page.show_flash()
    rows = review.list_heuristics(ws, task)
    _consolidate_section(ws, task, empty=not rows)
    approvers = _approvers_section(ws, task, me)
    _create_section(ws, task, me)
    if not rows:
        st.info(f"Task {task} has no heuristics yet. Cluster its micro-instructions on the "
                "Clusters page, then consolidate them above.")
        return
    _overview(rows)
    _merge_section(ws, rows, me)
    show = st.selectbox("Show", ["all", *review.STATUSES], key="h_filter")
    shown = rows if show == "all" else [r for r in rows if r["status"] == show]
    if not shown:
        st.info(f"No {show} heuristics.")
    else:
        _table(shown)
        by_id = {r["id"]: r for r in shown}
        wanted = st.session_state.pop("_pld_open_heuristic", None)
        if wanted in by_id:  # opened from the Home page's queue
            st.session_state["h_selected"] = wanted
        def label(i: int) -> str:
            return f"#{i} · {by_id[i]['status']} · {_short(by_id[i]['text'])}"

        hid = page.labelled_selectbox("Open heuristic", list(by_id), key="h_selected",
                                      format_func=label)
        _detail(ws, hid, me, approvers)
    st.divider()
    # After the heuristics: the rest of the prompt, signed off the same way.
    preamble_panel(ws, task, me)
    # Last: the evidence is about the approved set as a whole, not the heuristic opened above.
    _impact_section(ws, task)


main()
