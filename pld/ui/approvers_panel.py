"""The approver list of a task (Heuristics page): who may approve or reject its heuristics, and
adding or removing names, as the signed-in reviewer (:mod:`pld.signoff`)."""

from __future__ import annotations

import streamlit as st

from pld import signoff
from pld.approvers import list_approvers
from pld.errors import BadInput
from pld.identity import Identity, normalize_name
from pld.ui.acting import act
from pld.ui.escape import literal, say
from pld.workspace import Workspace


def _add(ws: Workspace, task: str) -> None:
    name = (st.session_state.get("h_new_approver") or "").strip()

    def run(who: Identity) -> str:
        if not signoff.add_approver(ws, task, name, who):
            raise BadInput(f"{name} is already an approver of {task}.")
        st.session_state["h_new_approver"] = ""
        return f"{name} is now an approver of {task}."

    act("add an approver", run, refused=lambda e: f"Approver not added: {e}")


def _remove(ws: Workspace, task: str) -> None:
    name = st.session_state.get("h_remove_approver")
    if not name:
        return

    def run(who: Identity) -> str:
        if not signoff.remove_approver(ws, task, name, who):
            raise BadInput(f"{name} was not an approver of {task}.")
        after = ("" if list_approvers(ws, task)
                 else " The list is empty: anyone may approve again.")
        return f"{name} is no longer an approver of {task}.{after}"

    act("remove an approver", run, refused=lambda e: f"Approver not removed: {e}")


def approvers_panel(ws: Workspace, task: str, me: Identity | None) -> list[str]:
    """Draw the task's approver list with add and remove; return the list (empty: anyone may
    approve, four-eyes still applying)."""
    approvers = list_approvers(ws, task)
    with st.expander(f"Approvers ({len(approvers) or 'anyone'})"):
        if approvers:
            st.write("Only these people may approve or reject heuristics of this task (others "
                     "may still edit, merge, split and comment): "
                     + ", ".join(f"**{literal(a)}**" for a in approvers))
        else:
            st.write("No approver list: anyone may approve, except who wrote a text, started "
                     "the job that wrote it or accepted it. Adding a name restricts approval to "
                     "the list.")
        listed = {normalize_name(a) for a in approvers}
        may_add = me is not None and (not approvers or me.name in listed)
        st.text_input("Add an approver", key="h_new_approver", disabled=not may_add)
        st.button("Add approver", key="h_add_approver", disabled=not may_add,
                  on_click=_add, args=(ws, task))
        if me is not None and not may_add:
            say("caption", f"Only approvers can add or remove names; {me.name} is not on the "
                           "list.")
        if approvers:
            may_remove = me is not None and me.name in listed
            if st.session_state.get("h_remove_approver") not in approvers:
                st.session_state.pop("h_remove_approver", None)  # removed meanwhile
            st.selectbox("Remove an approver", approvers, key="h_remove_approver",
                         disabled=not may_remove)
            st.button("Remove approver", key="h_remove_approver_btn", disabled=not may_remove,
                      on_click=_remove, args=(ws, task),
                      help="Removing the last name lets anyone approve again.")
    return approvers
