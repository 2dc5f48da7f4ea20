"""One heuristic on the Heuristics page: its text exactly as written, its last change, and the
Review, Edit, Split, Sources and History tabs.

Approve and reject run as the signed-in reviewer with the version they were looking at bound
into the button, so a heuristic changed in between is refused as stale, and the reason a
sign-off would be refused (four-eyes, approver list) shows before the click.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pld import review, review_rows, signoff
from pld.approvers import NotApprover
from pld.authorship import Authorship
from pld.errors import BadInput
from pld.identity import Identity, normalize_name
from pld.ui import diffs
from pld.ui.acting import SIGN_IN, act
from pld.ui.escape import literal, say, tip
from pld.ui.heuristic_drafts import split_tab
from pld.ui.heuristic_editor import edit_tab, editor_panel
from pld.ui.tables import untrusted_table
from pld.workspace import Workspace


def _comment_key(hid: int, name: str) -> str:
    # Per person: a comment bob typed must not be recorded with alice's decision.
    return f"h_comment_{hid}_{name}"


def _stale_decision(e: review_rows.StaleEdit, action: str, version: int) -> str:
    """Why a decision on ``version`` was refused once the heuristic had changed: what changed
    and by whom, and that the new version is on screen to review. The reviewer wrote nothing,
    so there is nothing of theirs to redo (the refusal's own words are for an edit)."""
    now, theirs = e.current, e.theirs
    what = f"heuristic #{now['id']} changed after you opened version {version}"
    if theirs is not None:
        before, after = theirs["before"] or {}, theirs["after"] or {}
        change = "its text" if before.get("text") != after.get("text") else "its status"
        what += (f": {theirs['who']} did '{theirs['action']}' at "
                 f"{theirs['created_at']}, which changed {change}")
    return (f"Not {action}d: {what}. It is now version {now['version']}, {now['status']}. "
            f"You had written nothing, so nothing is lost: version {now['version']} is shown "
            f"here with its last change marked; review it, then {action} it if you still "
            "mean to.")


def _refusal(e: BadInput, action: str, version: int) -> str:
    if isinstance(e, signoff.FourEyes):
        return f"Four-eyes rule: {e}"
    if isinstance(e, NotApprover):
        return f"Not an approver: {e}"
    if isinstance(e, review_rows.StaleEdit):
        return _stale_decision(e, action, version)
    return str(e)


def _decide(ws: Workspace, hid: int, version: int, action: str) -> None:
    def run(who: Identity) -> str:
        key = _comment_key(hid, who.name)
        comment = (st.session_state.get(key) or "").strip() or None
        decide = review.approve if action == "approve" else review.reject
        row = decide(ws, hid, who, base_version=version, comment=comment)
        st.session_state[key] = ""
        return (f"Heuristic #{hid} {row['status']} by {who.name} ({who.kind}); "
                f"now version {row['version']}.")

    act(action, run, refused=lambda e: _refusal(e, action, version))


def _last_change(hist: list[dict[str, Any]], h: dict[str, Any]) -> None:
    for r in reversed(hist):
        before, after = r["before"] or {}, r["after"] or {}
        if before.get("text") is not None and before.get("text") != after.get("text"):
            say("caption", f"Last text change: v{before.get('version')} → "
                           f"v{after.get('version')} by {r['who']} ({r['identity_kind']}, "
                           f"{r['action']}) at {r['created_at']}")
            st.html(diffs.diff_html(before["text"], after["text"]))
            return
    say("caption", f"Original text, {Authorship.from_row(h).sentence()}.")


def _review_tab(ws: Workspace, h: dict[str, Any], me: Identity | None,
                approvers: list[str]) -> None:
    hid, status = h["id"], h["status"]
    if me is None:
        st.info(f"{SIGN_IN} to approve or reject.")
    elif approvers and me.name not in {normalize_name(a) for a in approvers}:
        say("info", f"{me.name} is not on this task's approver list: you can edit and "
                    "comment, not approve or reject.")
    elif me.name in (authorship := Authorship.from_row(h)).persons() \
            and status != review_rows.APPROVED:
        mine = (f"You ({me.name}) wrote the current text" if authorship.written_by.name == me.name
                else f"The current text was {authorship.sentence()}")
        say("warning", f"{mine}: the four-eyes rule needs someone other than {me.name} to "
                       "approve it.")
    st.text_input("Comment (recorded with the decision)",
                  key=_comment_key(hid, me.name if me else ""), disabled=me is None)
    # Off before the click, with the reason the refusal would give, not refused after it.
    off = {a: f"{SIGN_IN} first." if me is None
           else signoff.sign_off_refusal(ws, h, me, a)
           for a in ("approve", "reject")}
    c1, c2 = st.columns(2)
    c1.button("Approve", key=f"h_approve_{hid}", type="primary", disabled=bool(off["approve"]),
              help=tip(off["approve"]), on_click=_decide,
              args=(ws, hid, h["version"], "approve"))
    c2.button("Reject", key=f"h_reject_{hid}", disabled=bool(off["reject"]),
              help=tip(off["reject"]), on_click=_decide, args=(ws, hid, h["version"], "reject"))
    if me is not None:
        st.caption(f"Signing as **{literal(me.name)}** ({me.kind}).")


def _sources_tab(h: dict[str, Any]) -> None:
    if not h["sources"]:
        st.caption("No source rules (written by hand or added by the conflict loop).")
        return
    untrusted_table(pd.DataFrame([{
        "rule": s["rule_id"], "micro-instruction": s["rule"], "leads to": s["rule_label"],
        "example": s["ext_id"], "split": s["split"], "gold label": s["gold_label"],
        "example text": s["example_text"],
    } for s in h["sources"]]), f"heuristic-{h['id']}-sources.csv")


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


def heuristic_detail(ws: Workspace, hid: int, me: Identity | None,
                     approvers: list[str]) -> None:
    """Draw heuristic ``hid`` with its tabs, for the reviewer ``me`` (None: read only)."""
    h = review.get_heuristic(ws, hid)
    hist = review.history(ws, hid)
    st.subheader(f"Heuristic #{hid}")
    approved = (f" · approved by {h['approved_by']} ({h['identity_kind']})"
                if h["approved_by"] else "")
    say("caption", f"{h['status']} · version {h['version']} · origin {h['origin'] or '–'} · "
                   f"{Authorship.from_row(h).sentence()}{approved}")
    # Exactly as written: Markdown here could fake badges and links, or hide reference lines
    # that stay in the prompt.
    st.code(h["text"], language=None, wrap_lines=True)
    _last_change(hist, h)
    editor_panel(ws, h, me)
    t_review, t_edit, t_split, t_sources, t_history = st.tabs(
        ["Review", "Edit", "Split", f"Sources ({len(h['sources'])})", f"History ({len(hist)})"])
    with t_review:
        _review_tab(ws, h, me, approvers)
    with t_edit:
        edit_tab(ws, h, me)
    with t_split:
        split_tab(ws, h, me)
    with t_sources:
        _sources_tab(h)
    with t_history:
        _history_tab(hist)
