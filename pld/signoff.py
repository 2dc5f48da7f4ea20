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
from pld.authorship import Authorship, Written, written_in_trail
from pld.errors import BadInput
from pld.identity import OIDC, Identity, normalize_name
from pld.review_rows import APPROVED, DRAFT, REJECTED, audit, check_status, entity_of
from pld.tasks.store import task_info
from pld.workspace import Workspace, loads, now


class FourEyes(BadInput):
    """The approver is in the version's authorship (wrote it, started the job that wrote it, or
    accepted the proposal that wrote it)."""


class Unidentified(BadInput):
    """Nobody named wrote the version (an upload without a name): nobody may approve it until
    a named person saves it."""


class OutsideReview(Unidentified):
    """The item's text is not the one the trail's last write of it recorded (it was changed
    with plain SQL), or the trail has no write of it: the trail cannot say who wrote it."""


class IdentityRequired(BadInput):
    """The task requires approvals by logged-in (OIDC) reviewers and this one is not."""


def requires_oidc(ws: Workspace, task: str) -> bool:
    """True when only OIDC-identified people may approve the task's items (and export then
    refuses approvals of any other kind): when the task's row says so, or the trail's last
    change of the requirement does (:func:`oidc_in_trail`), so that plain SQL on the table
    cannot lift it."""
    rows = ws.query("SELECT require_oidc FROM tasks WHERE name = ?", [task])
    return bool(rows and rows[0]["require_oidc"]) or oidc_in_trail(ws, task)


def oidc_in_trail(ws: Workspace, task: str, upto: int | None = None) -> bool:
    """True when the trail's last change of ``task``'s identity requirement (up to trail row
    ``upto``, when given) turned it on."""
    sql = ("SELECT after FROM reviews WHERE entity = 'task' AND action = 'require-oidc' "
           "AND json_extract(after, '$.task') = ?")
    args: list[Any] = [task]
    if upto is not None:
        sql += " AND id <= ?"
        args.append(upto)
    rows = ws.query(sql + " ORDER BY id DESC LIMIT 1", args)
    return bool(rows and (loads(rows[0]["after"], {}) or {}).get("require_oidc"))


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


def check_authorship(ws: Workspace, row: dict[str, Any], who: Identity) -> None:
    """The sign-off checks of the version's authorship: :class:`Unidentified` when nobody
    named wrote it, :class:`FourEyes` when ``who`` is in its authorship, both as the row says
    and as the trail's record of its text says (:func:`check_written`; the table can be edited
    with plain SQL, the trail cannot unnoticed). The one check for people,
    ``auto_approve_all`` and ``auto_approve_template`` alike."""
    authorship = Authorship.from_row(row)
    item = f"{entity_of(row)} {row['id']} v{row['version']}"
    if not authorship.identified:
        raise Unidentified(f"{item} was {authorship.sentence()}: nobody may approve it until a "
                           "named person saves it (edit it, or save it unchanged, under your "
                           "name)")
    if who.name in authorship.persons():
        raise FourEyes(f"{item} was {authorship.sentence()}, so {who.name} cannot approve it; "
                       "four-eyes rule: someone else must approve it")
    # A row the trail never recorded (written before the trail, or by a test) has only the
    # table to go by; export and verify refuse it.
    check_written(ws, entity_of(row), row["id"], row["text"], who.name, untracked_ok=True)


def check_written(ws: Workspace, entity: str, item_id: int, text: str | None, who: str, *,
                  before_row: int | None = None, untracked_ok: bool = False) -> Written | None:
    """The trail's record of who wrote ``text``, the text of ``entity`` ``item_id`` (just
    before trail row ``before_row``; None: now), once it shows that the person named ``who``
    may approve it: :class:`OutsideReview` when the trail's last write of the item wrote
    another text or there is none (None instead with ``untracked_ok``),
    :class:`Unidentified` when nobody named wrote it, :class:`FourEyes` when ``who`` is in
    its authorship or made that write. What approving, export and verify all require."""
    written = written_in_trail(ws, entity, item_id, before_row)
    item = f"{entity} {item_id}"
    if written is None:
        if untracked_ok:
            return None
        raise OutsideReview(f"{item}: no trail row wrote its text (changed outside the review)")
    if written.text != text:
        raise OutsideReview(f"{item}: its text is not the one trail row {written.row_id} wrote "
                            "(changed outside the review)")
    said = f"{item} was {written.authorship.sentence()} (trail row {written.row_id}"
    if not written.authorship.identified:
        raise Unidentified(f"{said}): nobody may approve it until a named person saves it")
    if who in written.excluded():
        raise FourEyes(f"{said}, by {written.actor.name}), so {who} cannot approve it; "
                       "four-eyes rule: someone else must approve it")
    return written


def check_sign_off(ws: Workspace, row: dict[str, Any], who: Identity, action: str) -> None:
    """Every check but the version's before ``who`` may ``action`` ("approve" or "reject")
    ``row``. Rejecting takes a heuristic out of the prompt: as much a sign-off as approving."""
    check_approver(ws, row["task"], who, action)
    if action == "approve":
        _check_identity(ws, row["task"], who, action)
        check_status(row, (DRAFT, REJECTED), action)
        check_authorship(ws, row, who)
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
