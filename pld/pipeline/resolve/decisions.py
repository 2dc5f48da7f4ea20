"""Decisions on the conflict loop's proposals, made by people through :mod:`pld.review`
(or, under ``--auto-accept-as``, recorded as automatic): accept carries a proposal out, reject
records why not. Each decision appends a ``reviews`` row for the proposal.
"""

from __future__ import annotations

from typing import Any

from pld import review, review_rows
from pld.errors import BadInput
from pld.identity import Identity
from pld.pipeline.resolve.evidence import BETTER
from pld.pipeline.resolve.state import (
    ACCEPTED,
    AUTO_COMMENT,
    EDIT,
    PENDING,
    REJECTED,
    REMOVE,
    STAGE,
    LoopOptions,
    iteration_record,
    proposal_rows,
    read_evidence,
)
from pld.workspace import Workspace, now, row_by_id


def _proposal(ws: Workspace, proposal_id: int) -> dict[str, Any]:
    return read_evidence(row_by_id(ws, "proposals", proposal_id, "proposal"))


def _base_version(ws: Workspace, p: dict[str, Any]) -> int:
    """The version of the target heuristic that the teacher saw when proposing."""
    versions = iteration_record(ws, p["task"], p["iteration"]).get("heuristic_versions") or {}
    if str(p["heuristic_id"]) not in versions:
        raise BadInput(f"proposal {p['id']}: heuristic {p['heuristic_id']} was not in the "
                       f"prompt of iteration {p['iteration']}")
    return int(versions[str(p["heuristic_id"])])


def _apply(ws: Workspace, p: dict[str, Any], who: Identity, comment: str,
           author: Identity | None, approver: Identity | None) -> dict[str, Any]:
    """Carry out an accepted proposal; call inside ``ws.write()``. ``author`` (a model, in
    automatic mode) writes the text instead of ``who``; ``approver`` then approves it."""
    out: dict[str, Any] = {}
    if p["kind"] == REMOVE:
        row = review.reject(ws, p["heuristic_id"], who, base_version=_base_version(ws, p),
                            comment=comment)
        return {"heuristic_id": row["id"], "heuristic_version": row["version"]}
    if p["kind"] == EDIT:
        base = _base_version(ws, p)
        if author is None:
            row = review.edit(ws, p["heuristic_id"], p["text"], who, base_version=base,
                              comment=comment)
        else:
            row = review_rows.fetch(ws, p["heuristic_id"])
            if row["version"] != base:
                raise review_rows.stale_error(ws, row["id"], base)
            with ws.write() as db:
                row = review_rows.apply_change(
                    ws, db, row, {"text": p["text"], "updated_by": author.name,
                                  "status": review_rows.DRAFT, **review_rows.NO_APPROVAL},
                    who=author, action="edit", comment=comment)
        hid = row["id"]
    else:
        if author is None:
            hid = review.create_heuristic(ws, p["task"], p["text"], who, origin=STAGE,
                                          comment=comment)
        else:
            with ws.write() as db:
                hid = review.insert_row(db, {"task": p["task"], "text": p["text"],
                                          "source_rule_ids": [], "origin": STAGE,
                                          "run_id": p["run_id"]},
                                     who=author, comment=comment)
    if approver is not None:
        review.approve(ws, hid, approver, base_version=review_rows.fetch(ws, hid)["version"],
                       comment=AUTO_COMMENT)
    row = review_rows.fetch(ws, hid)
    out.update(heuristic_id=hid, heuristic_version=row["version"], heuristic_status=row["status"])
    return out


def _decide(ws: Workspace, proposal_id: int, accept: bool, who: Identity, *,
            comment: str | None, author: Identity | None = None,
            approver: Identity | None = None) -> dict[str, Any]:
    with ws.write() as db:
        p = _proposal(ws, proposal_id)
        if p["status"] != PENDING:
            raise BadInput(f"proposal {proposal_id} is already {p['status']} "
                           f"(by {p['decided_by']})")
        status = ACCEPTED if accept else REJECTED
        effect: dict[str, Any] = {}
        if accept:
            note = (f"accepted proposal #{proposal_id} (resolve iteration {p['iteration']}): "
                    f"{p['rationale'] or p['kind']}")
            effect = _apply(ws, p, who, comment or note, author, approver)
        stamp = now()
        db["proposals"].update(proposal_id, {"status": status, "decided_by": who.name,
                                             "decided_at": stamp})
        review_rows.audit(db, who, "proposal", proposal_id,
                          "accept" if accept else "reject", {"status": PENDING},
                          {"status": status, "kind": p["kind"], **effect}, comment)
    return _proposal(ws, proposal_id)


def decide_proposal(ws: Workspace, proposal_id: int, accept: bool, who: Identity,
                    comment: str | None = None) -> dict[str, Any]:
    """Accept or reject a pending proposal as ``who``; returns the proposal row.

    Accepting an ``edit`` edits the heuristic as ``who`` (a draft someone else must approve),
    refused as stale if it changed since the teacher saw it; an ``add`` creates a draft by
    ``who``; a ``remove`` rejects the heuristic. Every decision appends a ``reviews`` row for
    the proposal (entity ``proposal``), besides the heuristic's own rows, in one transaction.
    """
    return _decide(ws, proposal_id, accept, who, comment=comment)


def auto_accept(ws: Workspace, o: LoopOptions, k: int) -> tuple[int, list[int]]:
    """Accept the pending proposals of iteration ``k`` as the automatic approver (the teacher
    writes, ``o.auto_accept_as`` approves). A measured proposal whose paired CI does not show
    a gain is held instead: left pending, with its CI, for people to decide. The teacher's
    proposals are accepted on trial: the next iteration's comparison with the best version
    keeps or undoes them. Returns how many were accepted and the ids held."""
    assert o.auto_accept_as is not None
    n, held = 0, []
    for p in proposal_rows(ws, o.task.name, k, PENDING):
        if p["measured"] is not None and p["measured"].get("verdict") != BETTER:
            held.append(p["id"])
            continue
        _decide(ws, p["id"], True, o.auto_accept_as, comment=AUTO_COMMENT,
                author=Identity.teacher(o.teacher), approver=o.auto_accept_as)
        n += 1
    return n, held

