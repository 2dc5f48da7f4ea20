"""Stage 4, review: the heuristic lifecycle. People (and pipeline stages) create, edit,
merge, split, approve and reject heuristics, and read their history.

Every action goes through the versioned, audited change of :mod:`pld.review_rows` (one
``reviews`` row per heuristic it touches; a change based on an old version is refused with
:class:`~pld.review_rows.StaleEdit`), and every sign-off through the checks of
:mod:`pld.signoff` (four-eyes, approver list, required identity kind).

The student prompt's preamble (task description, label list, output instruction; see
:mod:`pld.preamble`) is reviewed like a heuristic: the same edit, approve and reject with
``entity='preamble'``, the same versions, four-eyes and trail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlite_utils

from pld.approvers import check_approver
from pld.authorship import ANONYMOUS, Authorship, written_in_trail
from pld.errors import BadInput
from pld.identity import AUTO, Identity
from pld.review_rows import (
    APPROVED,
    DRAFT,
    HEURISTIC,
    LIVE,
    MERGED,
    NO_APPROVAL,
    REJECTED,
    SPLIT,
    STATUSES,
    apply_change,
    audit,
    check_base,
    check_status,
    decode_heuristic,
    fetch,
    insert_item,
)
from pld.signoff import FourEyes, Unidentified, check_authorship, check_sign_off
from pld.tasks.store import task_info
from pld.workspace import Workspace, dumps, loads, now

log = logging.getLogger(__name__)

AUTO_COMMENT = "auto-approved (benchmark)"


# -- reading --------------------------------------------------------------------------------------

_SHOW = """
SELECT h.*, j.value AS src_id, mi.rule AS src_rule, mi.label AS src_rule_label,
       e.id AS src_example_id, e.ext_id AS src_ext_id, e.split AS src_split,
       e.text AS src_example_text, e.label AS src_gold_label
FROM heuristics h
LEFT JOIN json_each(h.source_rule_ids) j
LEFT JOIN micro_instructions mi ON mi.id = j.value
LEFT JOIN examples e ON e.id = mi.example_id
WHERE h.id = ?
ORDER BY j.value
"""


def get_heuristic(ws: Workspace, heuristic_id: int) -> dict[str, Any]:
    """The heuristic with ``sources``: each source rule with its example text and gold label."""
    rows = ws.query(_SHOW, [heuristic_id])
    if not rows:
        raise BadInput(f"heuristic {heuristic_id} not found")
    out = decode_heuristic({k: v for k, v in rows[0].items() if not k.startswith("src_")})
    out["sources"] = [
        {"rule_id": r["src_id"], "rule": r["src_rule"], "rule_label": r["src_rule_label"],
         "example_id": r["src_example_id"], "ext_id": r["src_ext_id"], "split": r["src_split"],
         "example_text": r["src_example_text"], "gold_label": r["src_gold_label"]}
        for r in rows if r["src_id"] is not None
    ]
    return out


def list_heuristics(ws: Workspace, task: str, status: str | None = None) -> list[dict[str, Any]]:
    """The task's heuristics by id, optionally only those with ``status``."""
    if status is not None and status not in STATUSES:
        raise BadInput(f"status {status!r}: use one of {', '.join(STATUSES)}")
    sql, args = "SELECT * FROM heuristics WHERE task = ?", [task]
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    return [decode_heuristic(r) for r in ws.query(sql + " ORDER BY id", args)]


def approved_heuristics(ws: Workspace, task: str) -> list[dict[str, Any]]:
    """The approved heuristics of ``task`` by id: what goes into the student prompt."""
    return list_heuristics(ws, task, APPROVED)


def history(ws: Workspace, item_id: int, entity: str = HEURISTIC) -> list[dict[str, Any]]:
    """The audit trail of one heuristic (or preamble), oldest first, ``before``/``after``
    decoded."""
    rows = ws.query(
        "SELECT * FROM reviews WHERE entity = ? AND entity_id = ? ORDER BY id",
        [entity, item_id])
    for r in rows:
        r["before"], r["after"] = loads(r["before"]), loads(r["after"])
    return rows


def text_at_version(ws: Workspace, item_id: int, version: int,
                    entity: str = HEURISTIC) -> str | None:
    """The text a heuristic (or preamble) had at ``version``, read from the trail (every row
    records the whole item after it); None when the trail has no row at that version."""
    rows = ws.query(
        "SELECT json_extract(after, '$.text') AS text FROM reviews WHERE entity = ? AND "
        "entity_id = ? AND json_extract(after, '$.version') = ? ORDER BY id DESC LIMIT 1",
        [entity, item_id, version])
    return rows[0]["text"] if rows else None


# -- writing --------------------------------------------------------------------------------------

def _check_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise BadInput("heuristic text is empty")
    return text


def record_action(ws: Workspace, who: Identity | None, entity: str, action: str,
                  details: dict[str, Any], entity_id: int | None = None) -> None:
    """Audit an action that is not a review (loading data, starting or cancelling a job) as
    ``who``, or as ``pld:anonymous`` when nobody is identified (possible only without login)."""
    with ws.write() as db:
        audit(db, who or ANONYMOUS, entity, entity_id, action, None, details, None)


def insert_row(db: sqlite_utils.Database, fields: dict[str, Any], *, who: Identity,
               comment: str | None, authorship: Authorship | None = None,
               note: dict[str, Any] | None = None) -> int:
    """Insert a draft heuristic inside the caller's transaction and audit it as ``who``: the
    one way a heuristic is created. ``authorship`` says who wrote it (default: ``who``); a
    pipeline stage passes a model as the writer (:meth:`Identity.teacher`) with the person who
    started the job, and four-eyes keeps every person in it from approving."""
    row = {**fields, "source_rule_ids": dumps(sorted(set(fields.get("source_rule_ids") or [])))}
    return insert_item(db, HEURISTIC, row, who=who, authorship=authorship or Authorship(who),
                       comment=comment, note=note)[0]


def edit(ws: Workspace, heuristic_id: int, text: str, who: Identity, *, base_version: int,
         comment: str | None = None, entity: str = HEURISTIC,
         authorship: Authorship | None = None) -> dict[str, Any]:
    """Replace the text of a heuristic (or, with ``entity='preamble'``, a preamble), based on
    ``base_version``; returns the new row.

    The text becomes ``authorship``'s (default: written by ``who``, who then cannot approve
    it), and an approved or rejected item goes back to draft: its approval does not cover the
    new text. The same text again is refused, except when nobody named wrote it (an upload
    without a name) or it was changed outside the review (plain SQL): saving it unchanged
    makes ``who`` its author, so it can be approved.
    """
    text = _check_text(text)
    with ws.write() as db:
        row = fetch(ws, heuristic_id, entity)
        check_base(ws, row, base_version)
        check_status(row, LIVE, "edit")
        if text == row["text"] and Authorship.from_row(row).identified \
                and not _outside_review(ws, row, entity):
            raise BadInput(f"{entity} {heuristic_id}: the new text is the same as the old")
        changes = {"text": text, "status": DRAFT, **NO_APPROVAL}
        return apply_change(ws, db, row, changes, who=who, action="edit", comment=comment,
                            base_version=base_version, authorship=authorship or Authorship(who))


def _outside_review(ws: Workspace, row: dict[str, Any], entity: str) -> bool:
    """True when the row's text is not the one the trail's last write of it recorded (changed
    with plain SQL): saving it unchanged makes it a reviewed text, written by whoever saves."""
    written = written_in_trail(ws, entity, row["id"])
    return written is not None and written.text != row["text"]


def approve_row(ws: Workspace, db: sqlite_utils.Database, row: dict[str, Any], who: Identity,
                comment: str | None, base_version: int | None = None) -> dict[str, Any]:
    """Approve ``row`` inside the caller's transaction after every check a sign-off needs
    (status, approver list, required identity kind, four-eyes, version): the one place that
    sets ``approved``."""
    check_base(ws, row, base_version)
    check_sign_off(ws, row, who, "approve")
    changes = {"status": APPROVED, "approved_by": who.name, "approved_at": now(),
               "identity_kind": who.kind}
    return apply_change(ws, db, row, changes, who=who, action="approve", comment=comment,
                        base_version=base_version)


def approve(ws: Workspace, heuristic_id: int, who: Identity, *, base_version: int,
            comment: str | None = None, entity: str = HEURISTIC) -> dict[str, Any]:
    """Approve a draft (or rejected) heuristic (or preamble) at ``base_version``, the version
    the reviewer read; refused for anyone who wrote it, started the job that wrote it or
    accepted it (:func:`~pld.signoff.check_sign_off`), a non-approver, a stale version, or a
    self-declared identity on a task that requires OIDC. Returns the new row."""
    if base_version is None:
        raise BadInput("approving needs the version you reviewed (--base-version)")
    with ws.write() as db:
        row = fetch(ws, heuristic_id, entity)
        return approve_row(ws, db, row, who, comment, base_version)


def reject(ws: Workspace, heuristic_id: int, who: Identity, *, base_version: int | None = None,
           comment: str | None = None, entity: str = HEURISTIC) -> dict[str, Any]:
    """Reject a draft or approved heuristic (or preamble): it leaves the prompt. Refused for
    a non-approver (like :func:`approve`) or a stale ``base_version``. Returns the new row."""
    with ws.write() as db:
        row = fetch(ws, heuristic_id, entity)
        check_base(ws, row, base_version)
        check_sign_off(ws, row, who, "reject")
        return apply_change(ws, db, row, {"status": REJECTED, **NO_APPROVAL}, who=who,
                            action="reject", comment=comment, base_version=base_version)


def auto_approve_all(ws: Workspace, task: str, who: Identity, *, run_ids: Iterable[int],
                     on_skip: Callable[[str], None] | None = None) -> int:
    """Approve the drafts of ``task`` that runs ``run_ids`` wrote, as ``who`` (an identity of
    kind ``auto``: benchmarks, ``run --auto-approve-as``); returns how many. Only those: a
    person's own draft, or one from another run, waits for a person. Drafts ``who`` may not
    approve (:func:`pld.signoff.check_authorship`: four-eyes, an unidentified writer) are
    skipped, each reported through ``on_skip`` (and the log) with a one-line reason."""
    if who.kind != AUTO:
        raise BadInput(f"automatic approval needs an identity of kind {AUTO}, not {who.kind}")
    task_info(ws, task)
    check_approver(ws, task, who)
    runs = set(run_ids)
    approved = 0
    with ws.write() as db:
        for row in list_heuristics(ws, task, DRAFT):
            if row.get("run_id") not in runs:
                continue
            try:
                check_authorship(ws, row, who)
            except (FourEyes, Unidentified) as e:
                msg = f"heuristic {row['id']} not auto-approved: {e}"
                log.warning(msg)
                if on_skip is not None:
                    on_skip(msg)
                continue
            approve_row(ws, db, row, who, AUTO_COMMENT)
            approved += 1
    return approved


def _check_rules(ws: Workspace, task: str, rule_ids: Iterable[int]) -> list[int]:
    ids = sorted(set(int(i) for i in rule_ids))
    if not ids:
        return ids
    marks = ",".join("?" * len(ids))
    found = {r["id"] for r in ws.query(
        f"SELECT id FROM micro_instructions WHERE task = ? AND id IN ({marks})", [task, *ids])}
    missing = [i for i in ids if i not in found]
    if missing:
        raise BadInput(f"source rules not found in task {task!r}: {missing}")
    return ids


def create_heuristic(ws: Workspace, task: str, text: str, who: Identity,
                     source_rule_ids: Sequence[int] = (), origin: str = "manual", *,
                     comment: str | None = None, authorship: Authorship | None = None) -> int:
    """Write a new draft heuristic as ``who``, by hand (``who`` is its author, so cannot
    approve it) or, with ``authorship``, as a proposal ``who`` accepted."""
    text = _check_text(text)
    task_info(ws, task)
    ids = _check_rules(ws, task, source_rule_ids)
    with ws.write() as db:
        return insert_row(db, {"task": task, "text": text, "source_rule_ids": ids,
                               "origin": origin}, who=who, comment=comment,
                          authorship=authorship)


def _shared(rows: Sequence[dict[str, Any]], column: str) -> Any:
    values = {r[column] for r in rows}
    return values.pop() if len(values) == 1 else None


def merge_heuristics(ws: Workspace, ids: Sequence[int], text: str, who: Identity, *,
                     base_versions: dict[int, int] | None = None,
                     comment: str | None = None) -> int:
    """Replace several heuristics of one task by one with ``text``; returns its id.

    The new draft's sources are the union of theirs; the old ones become ``merged``.
    ``base_versions`` (id -> version the merger saw) refuses the merge if any changed since.
    """
    text = _check_text(text)
    unique = sorted(set(ids))
    if len(unique) < 2:
        raise BadInput("merge needs at least two different heuristic ids")
    with ws.write() as db:
        rows = [fetch(ws, i) for i in unique]
        for r in rows:
            check_base(ws, r, (base_versions or {}).get(r["id"]))
            check_status(r, LIVE, "merge")
        task = _shared(rows, "task")
        if task is None:
            raise BadInput(f"heuristics {unique} belong to different tasks; cannot merge")
        sources = sorted({s for r in rows for s in r["source_rule_ids"]})
        new = insert_row(db, {"task": task, "text": text, "source_rule_ids": sources,
                              "origin": "merge", "cluster_id": _shared(rows, "cluster_id"),
                              "clustering_id": _shared(rows, "clustering_id")},
                         who=who,
                         comment=comment or f"merged from {', '.join(f'#{i}' for i in unique)}")
        for r in rows:
            apply_change(ws, db, r, {"status": MERGED, **NO_APPROVAL}, who=who, action="merge",
                         comment=comment or f"merged into #{new}", note={"merged_into": new},
                         base_version=(base_versions or {}).get(r["id"]))
    return new


def split_heuristic(ws: Workspace, heuristic_id: int, texts: Sequence[str], who: Identity, *,
                    base_version: int | None = None,
                    comment: str | None = None) -> list[int]:
    """Replace one heuristic by several drafts (each keeps all its sources); the old one
    becomes ``split``. Returns the new ids in the order of ``texts``."""
    parts = [_check_text(t) for t in texts]
    if len(parts) < 2:
        raise BadInput("split needs at least two texts")
    with ws.write() as db:
        row = fetch(ws, heuristic_id)
        check_base(ws, row, base_version)
        check_status(row, LIVE, "split")
        fields = {k: row[k] for k in ("task", "source_rule_ids", "cluster_id", "clustering_id")}
        new = [insert_row(db, {**fields, "text": t, "origin": "split"}, who=who,
                          comment=comment or f"split from #{heuristic_id}") for t in parts]
        apply_change(ws, db, row, {"status": SPLIT, **NO_APPROVAL}, who=who, action="split",
                     comment=comment or f"split into {', '.join(f'#{i}' for i in new)}",
                     base_version=base_version, note={"split_into": new})
    return new
