"""The preamble's review panel (Heuristics page): the prompt's fixed text, shown exactly, with
approve, reject and edit under the same rules as a heuristic."""

from __future__ import annotations

import streamlit as st

from pld import preamble, review_rows, signoff
from pld.authorship import Authorship
from pld.identity import Identity
from pld.tasks.store import RULES_SLOT
from pld.ui.acting import SIGN_IN, act
from pld.ui.escape import say, tip
from pld.ui.preamble_editor import has_draft, preamble_editor
from pld.workspace import Workspace


def _decide(ws: Workspace, task: str, version: int, action: str) -> None:
    def run(me: Identity) -> str:
        decide = preamble.approve_preamble if action == "approve" else preamble.reject_preamble
        row = decide(ws, task, me, base_version=version)
        return f"Preamble {row['status']} by {me.name}; now version {row['version']}."

    act(f"{action} the preamble", run, refused=lambda e: f"Preamble not {action}d: {e}")


def preamble_panel(ws: Workspace, task: str, me: Identity | None) -> None:
    """Draw the task's preamble with its status and the reviewer's actions."""
    row = preamble.ensure_preamble(ws, task)
    status = row["status"]
    title = f"Preamble · {status} · v{row['version']}"
    # Open while it awaits a decision, or holds the reviewer's unsaved draft to offer back.
    with st.expander(title, expanded=status != review_rows.APPROVED
                     or has_draft(ws, row, me)):
        st.caption("Every prompt starts with this text; the heuristics go where the "
                   f"{RULES_SLOT} line is. No prompt is exported until it is approved.")
        st.code(row["text"], language=None, wrap_lines=True)
        signed = (f"approved by {row['approved_by']} ({row['identity_kind']})"
                  if row["approved_by"] else "not approved")
        written = Authorship.from_row(row).sentence()
        say("caption", f"{written[0].upper()}{written[1:]} · {signed}")
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
            preamble_editor(ws, task, row, me)
