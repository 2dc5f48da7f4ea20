"""The preamble's review panel (Heuristics page): the prompt's fixed text, shown exactly, with
approve, reject and edit under the same rules as a heuristic."""

from __future__ import annotations

import streamlit as st

from pld import preamble, review_rows, signoff
from pld.identity import Identity
from pld.ui import page
from pld.ui.acting import SIGN_IN, act
from pld.ui.escape import say, tip
from pld.workspace import Workspace


def _decide(ws: Workspace, task: str, version: int, action: str) -> None:
    def run(me: Identity) -> str:
        decide = preamble.approve_preamble if action == "approve" else preamble.reject_preamble
        row = decide(ws, task, me, base_version=version)
        return f"Preamble {row['status']} by {me.name}; now version {row['version']}."

    act(f"{action} the preamble", run, refused=lambda e: f"Preamble not {action}d: {e}")


def _save(ws: Workspace, task: str, version: int) -> None:
    def run(me: Identity) -> str:
        key = f"pre_text_{task}_{me.name}"
        row = preamble.edit_preamble(ws, task, st.session_state.get(key) or "", me,
                                     base_version=version)
        return (f"Preamble saved as version {row['version']} (a draft: someone else must "
                "approve it).")

    act("save the preamble", run, refused=lambda e: f"Preamble not saved: {e}")


def preamble_panel(ws: Workspace, task: str, me: Identity | None) -> None:
    """Draw the task's preamble with its status and the reviewer's actions."""
    row = preamble.ensure_preamble(ws, task)
    status = row["status"]
    title = f"Preamble · {status} · v{row['version']}"
    with st.expander(title, expanded=status != review_rows.APPROVED):
        st.caption("Every prompt starts with this text; the heuristics go where the "
                   f"{preamble.RULES_SLOT} line is. No prompt is exported until it is approved.")
        st.code(row["text"], language=None, wrap_lines=True)
        signed = (f"approved by {row['approved_by']} ({row['identity_kind']})"
                  if row["approved_by"] else "not approved")
        say("caption", f"Last written by {row['updated_by']} · {signed}")
        off = {a: f"{SIGN_IN} first." if me is None
               else signoff.sign_off_refusal(ws, row, me, a)
               for a in ("approve", "reject")}
        c1, c2 = st.columns(2)
        c1.button("Approve preamble", key=f"pre_approve_{task}", type="primary",
                  disabled=bool(off["approve"]), help=tip(off["approve"]), on_click=_decide,
                  args=(ws, task, row["version"], "approve"))
        c2.button("Reject preamble", key=f"pre_reject_{task}", disabled=bool(off["reject"]),
                  help=tip(off["reject"]), on_click=_decide,
                  args=(ws, task, row["version"], "reject"))
        if me is not None:
            key = f"pre_text_{task}_{me.name}"
            page.follow_value(key, row["text"])
            st.text_area("Edit the preamble", key=key, height=160)
            st.button("Save preamble", key=f"pre_save_{task}", on_click=_save,
                      args=(ws, task, row["version"]))
