"""A task's approver list as it stands: who is on it, and the check that an actor is.

Only the people on a non-empty list may approve or reject the task's items, change the list or
the task's identity requirement, change its description, or reload its data; an empty list
lets anyone. Adding and removing names is :mod:`pld.signoff`'s (audited); this module sits
below the task store so that a reload can be refused like any other change.
"""

from __future__ import annotations

from pld.errors import BadInput
from pld.identity import Identity, normalize_name
from pld.workspace import Workspace


class NotApprover(BadInput):
    """The task has an approver list and the actor is not on it (approve, reject, change the
    list, the description or the task's data)."""


def list_approvers(ws: Workspace, task: str) -> list[str]:
    """Names allowed to approve the task's heuristics; empty means anyone may."""
    return [r["name"] for r in ws.query(
        "SELECT name FROM approvers WHERE task = ? ORDER BY name", [task])]


def check_approver(ws: Workspace, task: str, who: Identity, action: str = "approve") -> None:
    """:class:`NotApprover` when the task has an approver list and ``who`` is not on it, so
    cannot ``action``."""
    approvers = list_approvers(ws, task)
    if approvers and who.name not in {normalize_name(a) for a in approvers}:
        actor = who.name if who.is_person else "nobody named"
        raise NotApprover(f"{actor} is not an approver of task {task!r}, so cannot {action} "
                          f"(approvers: {', '.join(approvers)})")
