"""Who may sign off: the one spelling of a name, who may act at all, and who may approve or
reject a reviewed item (heuristic or preamble).

Four-eyes: the last person who wrote an item's text (``updated_by``) cannot approve it; for a
draft a job wrote that is the person who started the job. A teacher's draft from a job nobody
named has no human author, so anyone may approve it. When the task has an approver list, only
the people on it may approve or reject (both decide what enters the prompt), and add or remove
names; anyone may still edit, merge, split and comment. A task may also require OIDC-identified
approvals. Names are compared in one spelling (:func:`normalize_name`).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from pld.errors import BadInput
from pld.review_rows import APPROVED, DRAFT, REJECTED, audit, check_status, entity_of
from pld.tasks.store import task_info
from pld.workspace import Workspace, now

SELF_DECLARED, OIDC, AUTO = "self-declared", "oidc", "auto"
IDENTITY_KINDS = (SELF_DECLARED, OIDC, AUTO)
TEACHER_PREFIX = "teacher:"  # the author name of text a model wrote; no person may use it
SYSTEM_PREFIX = "pld:"  # PLD Studio's own actors (the template, the conflict loop's revert)
RESERVED_PREFIXES = (TEACHER_PREFIX, SYSTEM_PREFIX)


class FourEyes(BadInput):
    """The approver is the heuristic's last editor."""


class NotApprover(BadInput):
    """The task has an approver list and the actor is not on it (approve, reject, or change
    the list)."""


class IdentityRequired(BadInput):
    """The task requires approvals by logged-in (OIDC) reviewers and this one is not."""


def normalize_name(name: str) -> str:
    """The one spelling of a person's name: NFKC, invisible and control characters removed,
    runs of whitespace made one space, casefolded. "Alice", "alice" and "alice" followed by a
    zero-width space are one person."""
    text = unicodedata.normalize("NFKC", name or "")
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc", "Co", "Cn")
                   or ch in " \t\n")
    return " ".join(text.split()).casefold()


def check_actor(who: str, identity_kind: str) -> str:
    """``who`` normalised (:func:`normalize_name`), when it may act: non-empty, not a reserved
    ``teacher:``/``pld:`` name, with a known identity kind; :class:`BadInput` otherwise. The
    one check of who is acting."""
    who = normalize_name(who)
    if not who:
        raise BadInput("--as: a reviewer name is required")
    if who.startswith(RESERVED_PREFIXES):
        raise BadInput(f"--as {who!r}: names starting with 'teacher:' or 'pld:' are reserved "
                       "for models and PLD Studio itself")
    if identity_kind not in IDENTITY_KINDS:
        raise BadInput(f"identity kind {identity_kind!r}: use one of {', '.join(IDENTITY_KINDS)}")
    return who


def list_approvers(ws: Workspace, task: str) -> list[str]:
    """Names allowed to approve the task's heuristics; empty means anyone may."""
    return [r["name"] for r in ws.query(
        "SELECT name FROM approvers WHERE task = ? ORDER BY name", [task])]


def check_approver(ws: Workspace, task: str, who: str, action: str = "approve") -> None:
    """:class:`NotApprover` when the task has an approver list and ``who`` (already
    normalised) is not on it, so cannot ``action``."""
    approvers = list_approvers(ws, task)
    if approvers and who not in {normalize_name(a) for a in approvers}:
        raise NotApprover(f"{who} is not an approver of task {task!r}, so cannot {action} "
                          f"(approvers: {', '.join(approvers)})")


def requires_oidc(ws: Workspace, task: str) -> bool:
    """True when only OIDC-identified people may approve the task's items (and export then
    refuses approvals of any other kind)."""
    rows = ws.query("SELECT require_oidc FROM tasks WHERE name = ?", [task])
    return bool(rows and rows[0]["require_oidc"])


def _check_identity(ws: Workspace, task: str, identity_kind: str, action: str) -> None:
    if identity_kind != OIDC and requires_oidc(ws, task):
        raise IdentityRequired(f"task {task!r} requires sign-offs by logged-in (OIDC) "
                               f"reviewers; a {identity_kind} identity cannot {action}")


def set_require_oidc(ws: Workspace, task: str, required: bool, who: str, *,
                     identity_kind: str = SELF_DECLARED) -> None:
    """Require (or stop requiring) OIDC-identified approvals for ``task``; only its approvers
    may change this once it has some, and only an OIDC identity may turn it off."""
    who = check_actor(who, identity_kind)
    task_info(ws, task)
    with ws.write() as db:
        check_approver(ws, task, who, "change the identity requirement")
        before = requires_oidc(ws, task)
        if before and not required:
            _check_identity(ws, task, identity_kind, "lift the OIDC requirement")
        if before == required:
            return
        db.execute("UPDATE tasks SET require_oidc = ? WHERE name = ?", [int(required), task])
        audit(db, who, identity_kind, "task", None, "require-oidc",
              {"task": task, "require_oidc": before}, {"task": task, "require_oidc": required},
              None)


def _check_four_eyes(row: dict[str, Any], who: str) -> None:
    if normalize_name(row["updated_by"] or "") == who:
        raise FourEyes(f"{entity_of(row)} {row['id']} was last written by {who} (or by a job "
                       f"{who} started); four-eyes rule: someone else must approve it")


def check_sign_off(ws: Workspace, row: dict[str, Any], who: str, identity_kind: str,
                   action: str) -> None:
    """Every check but the version's before ``who`` may ``action`` ("approve" or "reject")
    ``row``. Rejecting takes a heuristic out of the prompt: as much a sign-off as approving."""
    check_approver(ws, row["task"], who, action)
    if action == "approve":
        _check_identity(ws, row["task"], identity_kind, action)
        check_status(row, (DRAFT, REJECTED), action)
        _check_four_eyes(row, who)
    else:
        check_status(row, (DRAFT, APPROVED), action)


def sign_off_refusal(ws: Workspace, row: dict[str, Any], who: str, identity_kind: str,
                     action: str) -> str | None:
    """Why ``who`` cannot ``action`` ("approve" or "reject") ``row`` as it stands, in the words
    the refusal would use; None when they can. The app disables its button with this reason
    before the click (the refusal itself still guards the write)."""
    try:
        check_sign_off(ws, row, check_actor(who, identity_kind), identity_kind, action)
    except BadInput as e:
        return str(e)
    return None


def add_approver(ws: Workspace, task: str, name: str, who: str, *,
                 identity_kind: str = SELF_DECLARED) -> bool:
    """Put ``name`` on the task's approver list; False if already there.

    Once the list is non-empty only its members may add names (else anyone could add
    themselves); the first name may be added by anyone.
    """
    who = check_actor(who, identity_kind)
    name = check_actor(name, identity_kind)
    task_info(ws, task)
    with ws.write() as db:
        approvers = {normalize_name(a) for a in list_approvers(ws, task)}
        if approvers and who not in approvers:
            raise NotApprover(f"{who} is not an approver of task {task!r}; only "
                              f"{', '.join(sorted(approvers))} can add approvers")
        if name in approvers:
            return False
        db["approvers"].insert({"task": task, "name": name, "added_at": now()})
        audit(db, who, identity_kind, "approver", None, "add", None,
              {"task": task, "name": name}, None)
    return True


def remove_approver(ws: Workspace, task: str, name: str, who: str, *,
                    identity_kind: str = SELF_DECLARED) -> bool:
    """Take ``name`` off the task's approver list; False if it was not on it.

    Only an approver may remove names (themselves included). Removing the last name empties
    the list, and then anyone may approve again.
    """
    who = check_actor(who, identity_kind)
    name = normalize_name(name)
    task_info(ws, task)
    with ws.write() as db:
        stored = {normalize_name(a): a for a in list_approvers(ws, task)}
        if stored and who not in stored:
            raise NotApprover(f"{who} is not an approver of task {task!r}; only "
                              f"{', '.join(sorted(stored))} can remove approvers")
        if name not in stored:
            return False
        db.execute("DELETE FROM approvers WHERE task = ? AND name = ?", [task, stored[name]])
        audit(db, who, identity_kind, "approver", None, "remove", {"task": task, "name": name},
              None, None)
    return True
