"""Undoing a version the conflict loop did not adopt: the loop's own changes since the best
version go back, what people decided outside the loop stays.

The loop never approves: a heuristic whose best-version text it restores goes back to draft, last
written by whoever wrote that text, except in automatic mode where the automatic approver re-signs
what it had signed itself. Heuristics people rejected, merged, split or edited outside the loop
are left as they are; an approved heuristic the best version lacked leaves the prompt (rejected
if the loop added it, back to draft otherwise).
"""

from __future__ import annotations

from typing import Any

from pld import review, review_rows
from pld.errors import BadInput
from pld.identity import AUTO, Identity, normalize_name
from pld.pipeline.resolve.state import REVERT_ACTOR, STAGE, LoopOptions
from pld.workspace import Workspace, loads


def _loop_versions(ws: Workspace, task: str) -> dict[int, set[int]]:
    """Heuristic id -> the versions that accepting this task's proposals produced."""
    out: dict[int, set[int]] = {}
    for r in ws.query("SELECT r.after FROM reviews r JOIN proposals p ON p.id = r.entity_id "
                      "WHERE r.entity = 'proposal' AND r.action = 'accept' AND p.task = ?",
                      [task]):
        after = loads(r["after"], {})
        if after.get("heuristic_id") is not None and after.get("heuristic_version") is not None:
            out.setdefault(int(after["heuristic_id"]), set()).add(int(after["heuristic_version"]))
    return out


def _only_loop_changes(ws: Workspace, o: LoopOptions, heuristic_id: int, since: int,
                       loop_versions: dict[int, set[int]]) -> bool:
    """True when every change to the heuristic after version ``since`` was the loop's own: an
    accepted proposal, an automatic decision, a revert, or an approval of one of those."""
    actors = {REVERT_ACTOR.name, Identity.teacher(o.teacher).name}
    if o.auto_accept_as:
        actors.add(o.auto_accept_as.name)
    for r in review.history(ws, heuristic_id):
        version = (r["after"] or {}).get("version")
        if version is None or version <= since or r["action"] == "approve":
            continue
        if r["who"] not in actors and version not in loop_versions.get(heuristic_id, set()):
            return False
    return True


def revert_to_best(ws: Workspace, o: LoopOptions, best: dict[str, Any],
                   comment: str) -> dict[str, Any]:
    """Undo the loop's own adopted changes since the best version; call inside
    ``ws.write()``. Returns what it did: ``to_draft`` (heuristics people must approve again)
    and ``left`` (ones people changed since, not touched); see the module docstring."""
    target: dict[str, dict[str, Any]] = best["heuristics"]
    loop_versions = _loop_versions(ws, o.task.name)
    to_draft: list[int] = []
    left: list[int] = []

    def change(row: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        with ws.write() as db:
            return review_rows.apply_change(ws, db, row, {**changes, **review_rows.NO_APPROVAL},
                                            who=REVERT_ACTOR, action="revert",
                                            comment=comment)

    for row in review.approved_heuristics(ws, o.task.name):
        if str(row["id"]) in target:
            continue
        own = row["origin"] == STAGE and _only_loop_changes(ws, o, row["id"], 0, loop_versions)
        change(row, {"status": review_rows.REJECTED if own else review_rows.DRAFT})
        if not own:
            to_draft.append(row["id"])
    for key, snap in target.items():
        row = review_rows.fetch(ws, int(key))
        if row["status"] == review_rows.APPROVED and row["text"] == snap["text"]:
            continue
        if not _only_loop_changes(ws, o, row["id"], snap["version"], loop_versions):
            left.append(row["id"])
            continue
        row = change(row, {"text": snap["text"], "status": review_rows.DRAFT,
                           "updated_by": snap["updated_by"]})
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
