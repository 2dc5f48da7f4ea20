"""Decisions on the conflict loop's proposals, made by people through :mod:`pld.review`
(or, under ``--auto-accept-as``, recorded as automatic): accept carries a proposal out, reject
records why not. Each decision appends a ``reviews`` row for the proposal.
"""

from __future__ import annotations

from typing import Any

from pld import review, review_rows
from pld.authorship import Authorship, stored_identity
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
from pld.workspace import Workspace, loads, now, row_by_id


def _proposal(ws: Workspace, proposal_id: int) -> dict[str, Any]:
    return read_evidence(row_by_id(ws, "proposals", proposal_id, "proposal"))


def _base_version(ws: Workspace, p: dict[str, Any]) -> int:
    """The version of the target heuristic that the teacher saw when proposing."""
    versions = iteration_record(ws, p["task"], p["iteration"]).get("heuristic_versions") or {}
    if str(p["heuristic_id"]) not in versions:
        raise BadInput(f"proposal {p['id']}: heuristic {p['heuristic_id']} was not in the "
                       f"prompt of iteration {p['iteration']}")
    return int(versions[str(p["heuristic_id"])])


def _authorship(ws: Workspace, p: dict[str, Any], accepted_by: Identity | None) -> Authorship:
    """Who a proposal's text is by: the teacher of the run that proposed it, in a job the
    run's starter started, accepted by ``accepted_by`` (None: in automatic mode, where the
    acceptance is the automatic approval itself)."""
    runs = ws.query("SELECT params, started_by, started_by_kind FROM runs WHERE id = ?",
                    [p["run_id"]])
    run = runs[0] if runs else {}
    teacher = (loads(run.get("params"), {}) or {}).get("teacher") or "unknown"
    return Authorship(Identity.teacher(teacher),
                      stored_identity(run.get("started_by"), run.get("started_by_kind")),
                      accepted_by)


def _apply(ws: Workspace, p: dict[str, Any], who: Identity, comment: str,
           automatic: bool, approver: Identity | None) -> dict[str, Any]:
    """Carry out an accepted proposal; call inside ``ws.write()``. Its text is the teacher's,
    accepted by ``who`` (:func:`_authorship`); ``automatic``: the teacher writes it and
    ``approver`` then approves it."""
    if p["kind"] == REMOVE:
        row = review.reject(ws, p["heuristic_id"], who, base_version=_base_version(ws, p),
                            comment=comment)
        return {"heuristic_id": row["id"], "heuristic_version": row["version"]}
    authorship = _authorship(ws, p, None if automatic else who)
    if p["kind"] == EDIT:
        base = _base_version(ws, p)
        if not automatic:
            row = review.edit(ws, p["heuristic_id"], p["text"], who, base_version=base,
                              comment=comment, authorship=authorship)
        else:
            row = review_rows.fetch(ws, p["heuristic_id"])
            if row["version"] != base:
                raise review_rows.stale_error(ws, row["id"], base)
            with ws.write() as db:
                row = review_rows.apply_change(
                    ws, db, row, {"text": p["text"], "status": review_rows.DRAFT,
                                  **review_rows.NO_APPROVAL},
                    who=authorship.written_by, action="edit", comment=comment,
                    authorship=authorship)
        hid = row["id"]
    elif not automatic:
        hid = review.create_heuristic(ws, p["task"], p["text"], who, origin=STAGE,
                                      comment=comment, authorship=authorship)
    else:
        with ws.write() as db:
            hid = review.insert_row(db, {"task": p["task"], "text": p["text"],
                                         "source_rule_ids": [], "origin": STAGE,
                                         "run_id": p["run_id"]},
                                    who=authorship.written_by, comment=comment,
                                    authorship=authorship)
    if approver is not None:
        review.approve(ws, hid, approver, base_version=review_rows.fetch(ws, hid)["version"],
                       comment=AUTO_COMMENT)
    row = review_rows.fetch(ws, hid)
    return {"heuristic_id": hid, "heuristic_version": row["version"],
            "heuristic_status": row["status"]}


def _decide(ws: Workspace, proposal_id: int, accept: bool, who: Identity, *,
            comment: str | None, automatic: bool = False,
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
            effect = _apply(ws, p, who, comment or note, automatic, approver)
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

    Accepting an ``edit`` makes the teacher's text the heuristic's, accepted by ``who`` (a
    draft someone else must approve: four-eyes excludes the acceptor), refused as stale if it
    changed since the teacher saw it; an ``add`` creates such a draft; a ``remove`` rejects the
    heuristic. Every decision appends a ``reviews`` row for
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
        _decide(ws, p["id"], True, o.auto_accept_as, comment=AUTO_COMMENT, automatic=True,
                approver=o.auto_accept_as)
        n += 1
    return n, held

