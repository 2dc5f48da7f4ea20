"""Who may sign off: who may approve or reject a reviewed item (heuristic or preamble), and the
task's approver list and identity requirement. Who is acting at all is a
:class:`~pld.identity.Identity`.

Four-eyes: the last person who wrote an item's text (``updated_by``) cannot approve it; for a
draft a job wrote that is the person who started the job. A teacher's draft from a job nobody
named has no human author, so anyone may approve it. When the task has an approver list, only
the people on it may approve or reject (both decide what enters the prompt), and add or remove
names; anyone may still edit, merge, split and comment. A task may also require OIDC-identified
approvals. Names are compared in one spelling (:func:`~pld.identity.normalize_name`).
"""

from __future__ import annotations

from typing import Any

from pld.errors import BadInput
from pld.identity import OIDC, Identity, normalize_name
from pld.review_rows import APPROVED, DRAFT, REJECTED, audit, check_status, entity_of
from pld.tasks.store import task_info
from pld.workspace import Workspace, now


class FourEyes(BadInput):
    """The approver is the heuristic's last editor."""


class NotApprover(BadInput):
    """The task has an approver list and the actor is not on it (approve, reject, or change
    the list)."""


class IdentityRequired(BadInput):
    """The task requires approvals by logged-in (OIDC) reviewers and this one is not."""


def list_approvers(ws: Workspace, task: str) -> list[str]:
    """Names allowed to approve the task's heuristics; empty means anyone may."""
    return [r["name"] for r in ws.query(
        "SELECT name FROM approvers WHERE task = ? ORDER BY name", [task])]


def check_approver(ws: Workspace, task: str, who: Identity, action: str = "approve") -> None:
    """:class:`NotApprover` when the task has an approver list and ``who`` is not on it, so
    cannot ``action``."""
    approvers = list_approvers(ws, task)
    if approvers and who.name not in {normalize_name(a) for a in approvers}:
        raise NotApprover(f"{who.name} is not an approver of task {task!r}, so cannot {action} "
                          f"(approvers: {', '.join(approvers)})")


def requires_oidc(ws: Workspace, task: str) -> bool:
    """True when only OIDC-identified people may approve the task's items (and export then
    refuses approvals of any other kind)."""
    rows = ws.query("SELECT require_oidc FROM tasks WHERE name = ?", [task])
    return bool(rows and rows[0]["require_oidc"])


def _check_identity(ws: Workspace, task: str, who: Identity, action: str) -> None:
    if who.kind != OIDC and requires_oidc(ws, task):
        raise IdentityRequired(f"task {task!r} requires sign-offs by logged-in (OIDC) "
                               f"reviewers; a {who.kind} identity cannot {action}")


def set_require_oidc(ws: Workspace, task: str, required: bool, who: Identity) -> None:
    """Require (or stop requiring) OIDC-identified approvals for ``task``; only its approvers
    may change this once it has some, and only an OIDC identity may turn it off."""
    task_info(ws, task)
    with ws.write() as db:
        check_approver(ws, task, who, "change the identity requirement")
        before = requires_oidc(ws, task)
        if before and not required:
            _check_identity(ws, task, who, "lift the OIDC requirement")
        if before == required:
            return
        db.execute("UPDATE tasks SET require_oidc = ? WHERE name = ?", [int(required), task])
        audit(db, who, "task", None, "require-oidc",
              {"task": task, "require_oidc": before}, {"task": task, "require_oidc": required},
              None)


def _check_four_eyes(row: dict[str, Any], who: Identity) -> None:
    if normalize_name(row["updated_by"] or "") == who.name:
        raise FourEyes(f"{entity_of(row)} {row['id']} was last written by {who.name} (or by a "
                       f"job {who.name} started); four-eyes rule: someone else must approve it")


def check_sign_off(ws: Workspace, row: dict[str, Any], who: Identity, action: str) -> None:
    """Every check but the version's before ``who`` may ``action`` ("approve" or "reject")
    ``row``. Rejecting takes a heuristic out of the prompt: as much a sign-off as approving."""
    check_approver(ws, row["task"], who, action)
    if action == "approve":
        _check_identity(ws, row["task"], who, action)
        check_status(row, (DRAFT, REJECTED), action)
        _check_four_eyes(row, who)
    else:
        check_status(row, (DRAFT, APPROVED), action)


def sign_off_refusal(ws: Workspace, row: dict[str, Any], who: Identity,
                     action: str) -> str | None:
    """Why ``who`` cannot ``action`` ("approve" or "reject") ``row`` as it stands, in the words
    the refusal would use; None when they can. The app disables its button with this reason
    before the click (the refusal itself still guards the write)."""
    try:
        check_sign_off(ws, row, who, action)
    except BadInput as e:
        return str(e)
    return None


def add_approver(ws: Workspace, task: str, name: str, who: Identity) -> bool:
    """Put ``name`` on the task's approver list; False if already there.

    Once the list is non-empty only its members may add names (else anyone could add
    themselves); the first name may be added by anyone. ``name`` must be one a person could
    act under (:class:`~pld.identity.Identity`).
    """
    name = Identity(name).name
    task_info(ws, task)
    with ws.write() as db:
        approvers = {normalize_name(a) for a in list_approvers(ws, task)}
        if approvers and who.name not in approvers:
            raise NotApprover(f"{who.name} is not an approver of task {task!r}; only "
                              f"{', '.join(sorted(approvers))} can add approvers")
        if name in approvers:
            return False
        db["approvers"].insert({"task": task, "name": name, "added_at": now()})
        audit(db, who, "approver", None, "add", None, {"task": task, "name": name}, None)
    return True


def remove_approver(ws: Workspace, task: str, name: str, who: Identity) -> bool:
    """Take ``name`` off the task's approver list; False if it was not on it.

    Only an approver may remove names (themselves included). Removing the last name empties
    the list, and then anyone may approve again.
    """
    name = normalize_name(name)
    task_info(ws, task)
    with ws.write() as db:
        stored = {normalize_name(a): a for a in list_approvers(ws, task)}
        if stored and who.name not in stored:
            raise NotApprover(f"{who.name} is not an approver of task {task!r}; only "
                              f"{', '.join(sorted(stored))} can remove approvers")
        if name not in stored:
            return False
        db.execute("DELETE FROM approvers WHERE task = ? AND name = ?", [task, stored[name]])
        audit(db, who, "approver", None, "remove", {"task": task, "name": name}, None, None)
    return True
