"""Who may sign off: who may approve or reject a reviewed item (heuristic or preamble), and the
task's approver list and identity requirement. Who is acting at all is a
:class:`~pld.identity.Identity`; who wrote the version is its :class:`~pld.authorship.Authorship`.

Four-eyes: nobody in the version's authorship may approve it: whoever wrote it, the person who
started the job that wrote it, the person who accepted the proposal that wrote it. A teacher's
draft from a job nobody named has no human author, so anyone may approve it; a text nobody
named wrote (a file uploaded without a name) nobody may approve until a named person saves it.
When the task has an approver list, only the people on it may approve or reject (both decide
what enters the prompt), and add or remove names; anyone may still edit, merge, split and
comment. A task may also require OIDC-identified approvals. Names are compared in one spelling
(:func:`~pld.identity.normalize_name`).
"""

from __future__ import annotations

from typing import Any

from pld.approvers import NotApprover, check_approver, list_approvers
from pld.authorship import Authorship
from pld.errors import BadInput
from pld.identity import OIDC, Identity, normalize_name
from pld.review_rows import APPROVED, DRAFT, REJECTED, audit, check_status, entity_of
from pld.tasks.store import task_info
from pld.workspace import Workspace, now


class FourEyes(BadInput):
    """The approver is in the version's authorship (wrote it, started the job that wrote it, or
    accepted the proposal that wrote it)."""


class Unidentified(BadInput):
    """Nobody named wrote the version (an upload without a name): nobody may approve it until
    a named person saves it."""


class IdentityRequired(BadInput):
    """The task requires approvals by logged-in (OIDC) reviewers and this one is not."""


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


def check_authorship(row: dict[str, Any], who: Identity) -> None:
    """The sign-off checks of the version's authorship: :class:`Unidentified` when nobody
    named wrote it, :class:`FourEyes` when ``who`` is in its authorship. The one check for
    people, ``auto_approve_all`` and ``auto_approve_template`` alike."""
    authorship = Authorship.from_row(row)
    item = f"{entity_of(row)} {row['id']} v{row['version']}"
    if not authorship.identified:
        raise Unidentified(f"{item} was {authorship.sentence()}: nobody may approve it until a "
                           "named person saves it (edit it, or save it unchanged, under your "
                           "name)")
    if who.name in authorship.persons():
        raise FourEyes(f"{item} was {authorship.sentence()}, so {who.name} cannot approve it; "
                       "four-eyes rule: someone else must approve it")


def check_sign_off(ws: Workspace, row: dict[str, Any], who: Identity, action: str) -> None:
    """Every check but the version's before ``who`` may ``action`` ("approve" or "reject")
    ``row``. Rejecting takes a heuristic out of the prompt: as much a sign-off as approving."""
    check_approver(ws, row["task"], who, action)
    if action == "approve":
        _check_identity(ws, row["task"], who, action)
        check_status(row, (DRAFT, REJECTED), action)
        check_authorship(row, who)
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
