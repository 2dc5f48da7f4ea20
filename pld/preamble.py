"""The student prompt's preamble: every word of the system prompt that is not a heuristic.

That is the task description, the line that introduces the rules, the label list and the output
instruction. It is a reviewed item like a heuristic (one per task, in ``preambles``): it has
versions, four-eyes, history and approval through :mod:`pld.review` with ``entity='preamble'``,
so that every byte of an exported prompt is something a person approved.

Its text holds the line :data:`~pld.tasks.store.RULES_SLOT` where the numbered heuristics go;
:func:`compose` puts them there. The first draft is the ``student`` template filled in with the
task's description and labels (:func:`~pld.tasks.store.default_text`), written as whoever
supplied the description when the task was loaded, or, for a built-in task's own description,
by ``pld:template`` (no person, so anyone but the person who loaded it may approve it). A prompt
is built from the preamble's stored text, never from the template on disk, so a change to the
template does not change what people approved.

The task description is the preamble's first words: :func:`set_description` is how a person
changes it, and the change is carried into the preamble as a draft that someone else approves.
"""

from __future__ import annotations

from typing import Any

from pld import review
from pld.approvers import check_approver
from pld.authorship import TEMPLATE, Authorship
from pld.errors import BadInput
from pld.identity import AUTO, Identity
from pld.review_rows import DRAFT, PREAMBLE, audit
from pld.signoff import FourEyes, Unidentified, check_authorship
from pld.tasks.store import RULES_SLOT, TaskInfo, carry_description, draft_preamble, task_info
from pld.workspace import Workspace


def check_text(text: str) -> str:
    """``text`` when it is a usable preamble: non-empty with exactly one line that is
    :data:`RULES_SLOT`; :class:`BadInput` naming the problem otherwise."""
    text = (text or "").strip()
    slots = sum(line.strip() == RULES_SLOT for line in text.split("\n"))
    if slots != 1:
        raise BadInput(f"the preamble must have exactly one line that reads {RULES_SLOT} "
                       f"(where the heuristics go); this text has {slots}")
    return text


def heuristic_item(number: int, text: str) -> str:
    """One numbered list entry as it appears in the prompt (continuation lines indented)."""
    prefix = f"{number}. "
    lines = [line.rstrip() for line in text.strip().splitlines()] or [""]
    pad = " " * len(prefix)
    return prefix + "\n".join([lines[0]] + [pad + line if line else "" for line in lines[1:]])


def compose(preamble: str, heuristics: list[str]) -> str:
    """The system prompt: ``preamble`` with its :data:`RULES_SLOT` line replaced by the
    numbered ``heuristics`` (pure: the same texts always give the same bytes)."""
    if not heuristics:
        raise BadInput("a prompt needs at least one heuristic")
    numbered = "\n".join(heuristic_item(i, h) for i, h in enumerate(heuristics, 1))
    # split("\n"), not splitlines(): other line breaks in a description must stay as they are.
    lines = check_text(preamble).split("\n")
    return "\n".join(numbered if line.strip() == RULES_SLOT else line for line in lines).strip()


def get_preamble(ws: Workspace, task: str) -> dict[str, Any] | None:
    """The task's preamble row, or None when it has none yet."""
    rows = ws.query("SELECT * FROM preambles WHERE task = ?", [task])
    return rows[0] if rows else None


def ensure_preamble(ws: Workspace, task: str) -> dict[str, Any]:
    """The task's preamble; a task loaded without a named author of its description (a
    built-in task's own) gets it now, drafted from the template as ``pld:template``'s."""
    row = get_preamble(ws, task)
    if row is not None:
        return row
    info: TaskInfo = task_info(ws, task)
    with ws.write() as db:
        draft_preamble(ws, db, task, info.description, info.labels,
                       authorship=Authorship(TEMPLATE))
    row = get_preamble(ws, task)
    assert row is not None
    return row


def edit_preamble(ws: Workspace, task: str, text: str, who: Identity, *, base_version: int,
                  comment: str | None = None) -> dict[str, Any]:
    """Rewrite the task's preamble (back to draft; ``who`` cannot approve it)."""
    row = ensure_preamble(ws, task)
    return review.edit(ws, row["id"], check_text(text), who, base_version=base_version,
                       comment=comment, entity=PREAMBLE)


def approve_preamble(ws: Workspace, task: str, who: Identity, *, base_version: int,
                     comment: str | None = None) -> dict[str, Any]:
    """Approve the task's preamble at ``base_version`` (the checks of :func:`review.approve`)."""
    row = ensure_preamble(ws, task)
    return review.approve(ws, row["id"], who, base_version=base_version, comment=comment,
                          entity=PREAMBLE)


def reject_preamble(ws: Workspace, task: str, who: Identity, *,
                    base_version: int | None = None,
                    comment: str | None = None) -> dict[str, Any]:
    """Reject the task's preamble: no prompt of the task can be exported until it is rewritten
    and approved."""
    row = ensure_preamble(ws, task)
    return review.reject(ws, row["id"], who, base_version=base_version, comment=comment,
                         entity=PREAMBLE)


def preamble_history(ws: Workspace, task: str) -> list[dict[str, Any]]:
    """The audit trail of the task's preamble, oldest first."""
    row = get_preamble(ws, task)
    return [] if row is None else review.history(ws, row["id"], PREAMBLE)


def auto_approve_template(ws: Workspace, task: str, who: Identity) -> bool:
    """Approve the task's preamble as ``who``, an identity of kind ``auto`` (``run
    --auto-approve-as``), when it is still the template's draft and ``who`` is not in its
    authorship (:func:`pld.signoff.check_authorship`); True when it did. A preamble a person
    wrote or edited waits for a person."""
    if who.kind != AUTO:
        raise BadInput(f"automatic approval needs an identity of kind {AUTO}, not {who.kind}")
    row = ensure_preamble(ws, task)
    if row["status"] != DRAFT or Authorship.from_row(row).written_by != TEMPLATE:
        return False
    try:
        check_authorship(ws, row, who)
    except (FourEyes, Unidentified):
        return False
    approve_preamble(ws, task, who, base_version=row["version"], comment=review.AUTO_COMMENT)
    return True


class StaleDescription(BadInput):
    """The task's description changed since the editor read it."""


def set_description(ws: Workspace, task: str, text: str, who: Identity, *,
                    base: str | None = None, comment: str | None = None) -> bool:
    """Keep ``text`` as the description of ``task`` (what teacher and student read first);
    False when it already is.

    ``base`` is the description the editor started from: when someone changed it since, the
    edit is refused (:class:`StaleDescription`) rather than silently overwriting theirs. When
    the task has an approver list only its members may change the description, since it goes
    into every prompt built from now on. Prompt versions already built keep their text.
    """
    text = " ".join((text or "").split())
    if not text:
        raise BadInput("a task description cannot be empty")
    with ws.write() as db:
        current = task_info(ws, task).description
        if base is not None and " ".join(base.split()) != " ".join(current.split()):
            raise StaleDescription(f"the description of task {task!r} was changed since you "
                                   f"read it; it now reads: {current}")
        check_approver(ws, task, who, "change its description")
        if text == current:
            return False
        db.execute("UPDATE tasks SET description = ? WHERE name = ?", [text, task])
        audit(db, who, "task", None, "describe",
              {"task": task, "description": current}, {"task": task, "description": text},
              comment)
        carry_description(ws, db, task, current, text, authorship=Authorship(who),
                          comment="the task description changed")
    return True
