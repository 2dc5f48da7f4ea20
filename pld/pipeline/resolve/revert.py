"""Undoing a version the conflict loop did not adopt: the loop's own changes since the best
version go back, what people decided stays.

The loop's own changes are the rows of its automatic decisions: a text a teacher wrote, a
decision of an automatic approver (identity kind ``auto``) that accepted this task's
proposals (``--auto-accept-as``), and the loop's earlier reverts. A person's decision is never
the loop's, whatever it carried out: an accepted proposal (an edit, an add, a ``remove``), a
reject, approve or edit done meanwhile, also by a person who typed the automatic approver's
name (the kind tells them apart).

The loop never approves: a heuristic whose best-version text it restores goes back to draft,
last written by whoever wrote that text, except in automatic mode where the automatic approver
re-signs what it had signed itself. A heuristic a person changed since the best version is left
as it is; an approved heuristic the best version lacked is rejected when only the loop made
it, and left as it is otherwise.
"""

from __future__ import annotations

from typing import Any

from pld import review, review_rows
from pld.authorship import Authorship
from pld.errors import BadInput
from pld.identity import AUTO, TEACHER_PREFIX, normalize_name
from pld.pipeline.resolve.state import REVERT_ACTOR, STAGE, LoopOptions
from pld.workspace import Workspace


def _automatic_approvers(ws: Workspace, o: LoopOptions) -> set[str]:
    """The names of the automatic identities that accepted this task's proposals, and this
    run's (a person deciding a proposal is kind ``self-declared`` or ``oidc``, never ``auto``)."""
    names = {r["who"] for r in ws.query(
        "SELECT DISTINCT r.who FROM reviews r JOIN proposals p ON p.id = r.entity_id "
        "WHERE r.entity = 'proposal' AND r.action = 'accept' AND r.identity_kind = ? "
        "AND p.task = ?", [AUTO, o.task.name])}
    if o.auto_accept_as:
        names.add(o.auto_accept_as.name)
    return names


def _is_the_loops(row: dict[str, Any], approvers: set[str]) -> bool:
    """True when a trail row is one of the loop's own automatic changes (module docstring)."""
    if row["identity_kind"] != AUTO:
        return False  # a person, whatever the name
    who = row["who"]
    return who == REVERT_ACTOR.name or who.startswith(TEACHER_PREFIX) or who in approvers


def _only_loop_changes(ws: Workspace, heuristic_id: int, since: int,
                       approvers: set[str]) -> bool:
    """True when every change to the heuristic after version ``since`` was the loop's own."""
    for r in review.history(ws, heuristic_id):
        version = (r["after"] or {}).get("version")
        if version is not None and version > since and not _is_the_loops(r, approvers):
            return False
    return True


def revert_to_best(ws: Workspace, o: LoopOptions, best: dict[str, Any],
                   comment: str) -> dict[str, Any]:
    """Undo the loop's own adopted changes since the best version; call inside
    ``ws.write()``. Returns what it did: ``to_draft`` (heuristics people must approve again)
    and ``left`` (ones people changed since, not touched); see the module docstring."""
    target: dict[str, dict[str, Any]] = best["heuristics"]
    approvers = _automatic_approvers(ws, o)
    to_draft: list[int] = []
    left: list[int] = []

    def change(row: dict[str, Any], changes: dict[str, Any],
               authorship: Authorship | None = None) -> dict[str, Any]:
        with ws.write() as db:
            return review_rows.apply_change(ws, db, row, {**changes, **review_rows.NO_APPROVAL},
                                            who=REVERT_ACTOR, action="revert",
                                            comment=comment, authorship=authorship)

    for row in review.approved_heuristics(ws, o.task.name):
        if str(row["id"]) in target:
            continue
        if row["origin"] == STAGE and _only_loop_changes(ws, row["id"], 0, approvers):
            change(row, {"status": review_rows.REJECTED})
        else:
            left.append(row["id"])
    for key, snap in target.items():
        row = review_rows.fetch(ws, int(key))
        if row["status"] == review_rows.APPROVED and row["text"] == snap["text"]:
            continue
        if not _only_loop_changes(ws, row["id"], snap["version"], approvers):
            left.append(row["id"])
            continue
        row = change(row, {"text": snap["text"], "status": review_rows.DRAFT},
                     Authorship.from_row(snap))
        if not _auto_resign(ws, o, row, snap):
            to_draft.append(row["id"])
    return {"to_draft": sorted(to_draft), "left": sorted(left)}


def _auto_resign(ws: Workspace, o: LoopOptions, row: dict[str, Any],
                 snap: dict[str, Any]) -> bool:
    """In automatic mode, approve a restored text again when the same automatic approver had
    approved it; True when it did."""
    if not (o.auto_accept_as and snap.get("identity_kind") == AUTO
            and normalize_name(snap.get("approved_by") or "") == o.auto_accept_as.name):
        return False
    try:
        with ws.write() as db:
            review.approve_row(ws, db, row, o.auto_accept_as,
                               "re-approved after revert (automatic)")
    except BadInput:
        return False
    return True
