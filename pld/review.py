"""Stage 4, review: people edit, merge, split, approve and reject heuristics.

Every action appends one row per heuristic it touches to ``reviews`` (who, identity kind, when,
action, the row before and after as JSON, comment); nothing there is ever updated or deleted.

Concurrency is optimistic. ``heuristics.version`` is the row's version: every action bumps it
(an approval too, so an edit prepared before someone approved cannot silently undo that
approval). An action based on an older version is refused with :class:`StaleEdit`, which carries
the row as it is now and the review row of the change that was missed. The ``UPDATE ... WHERE
version = ?`` runs inside one write transaction, so of two processes acting on the same version
exactly one wins.

Four-eyes: the last person who wrote a heuristic's text (``updated_by``) cannot approve it; for
a draft a job wrote that is the person who started the job. A teacher's draft from a job nobody
named has no human author, so anyone may approve it. When the task has an approver list, only
the people on it may approve or reject (both decide what enters the prompt), and add or remove
names; anyone may still edit, merge, split and comment. A task may also require OIDC-identified
approvals. Names are compared in one spelling (:func:`normalize_name`).

The student prompt's preamble (task description, label list, output instruction; see
:mod:`pld.preamble`) is reviewed like a heuristic: the same edit, approve and reject with
``entity='preamble'``, the same versions, four-eyes and trail. Every row written to ``reviews``
goes through :func:`audit`, which chains it (:mod:`pld.trail`).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlite_utils

from pld import trail
from pld.errors import BadInput
from pld.tasks.store import task_info
from pld.workspace import Workspace, dumps, loads, now

log = logging.getLogger(__name__)

DRAFT, APPROVED, REJECTED, MERGED, SPLIT = "draft", "approved", "rejected", "merged", "split"
STATUSES = (DRAFT, APPROVED, REJECTED, MERGED, SPLIT)
LIVE = (DRAFT, APPROVED, REJECTED)  # statuses a reviewer can still act on
SELF_DECLARED, OIDC, AUTO = "self-declared", "oidc", "auto"
IDENTITY_KINDS = (SELF_DECLARED, OIDC, AUTO)
TEACHER_PREFIX = "teacher:"  # the author name of text a model wrote; no person may use it
SYSTEM_PREFIX = "pld:"  # PLD Studio's own actors (the template, the conflict loop's revert)
RESERVED_PREFIXES = (TEACHER_PREFIX, SYSTEM_PREFIX)
HEURISTIC, PREAMBLE = "heuristic", "preamble"
TABLES = {HEURISTIC: "heuristics", PREAMBLE: "preambles"}  # reviewed items and their tables
AUTO_COMMENT = "auto-approved (benchmark)"
_NO_APPROVAL = {"approved_by": None, "approved_at": None, "identity_kind": None}


class StaleEdit(BadInput):
    """The action was based on an old version. ``current`` is the row now; ``theirs`` is the
    review row of the first change the actor had not seen (None if there is none)."""

    def __init__(self, message: str, current: dict[str, Any], theirs: dict[str, Any] | None):
        super().__init__(message)
        self.current = current
        self.theirs = theirs


class FourEyes(BadInput):
    """The approver is the heuristic's last editor."""


class NotApprover(BadInput):
    """The task has an approver list and the actor is not on it (approve, reject, or change
    the list)."""


# -- reading --------------------------------------------------------------------------------------

def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["source_rule_ids"] = loads(row["source_rule_ids"], [])
    return row


def fetch(ws: Workspace, item_id: int, entity: str = HEURISTIC) -> dict[str, Any]:
    """The heuristic (or preamble) row, JSON decoded, without sources; BadInput if none."""
    rows = ws.query(f"SELECT * FROM {TABLES[entity]} WHERE id = ?", [item_id])
    if not rows:
        raise BadInput(f"{entity} {item_id} not found")
    return _decode(rows[0]) if entity == HEURISTIC else rows[0]


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
    out = _decode({k: v for k, v in rows[0].items() if not k.startswith("src_")})
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
    return [_decode(r) for r in ws.query(sql + " ORDER BY id", args)]


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


def list_approvers(ws: Workspace, task: str) -> list[str]:
    """Names allowed to approve the task's heuristics; empty means anyone may."""
    return [r["name"] for r in ws.query(
        "SELECT name FROM approvers WHERE task = ? ORDER BY name", [task])]


# -- checks ---------------------------------------------------------------------------------------

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


def _check_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise BadInput("heuristic text is empty")
    return text


def _entity(row: dict[str, Any]) -> str:
    return HEURISTIC if "source_rule_ids" in row else PREAMBLE


def _check_status(row: dict[str, Any], allowed: Iterable[str], action: str) -> None:
    if row["status"] not in allowed:
        raise BadInput(f"{_entity(row)} {row['id']} is {row['status']}; cannot {action} it")


def _check_approver(ws: Workspace, task: str, who: str, action: str = "approve") -> None:
    approvers = list_approvers(ws, task)
    if approvers and who not in {normalize_name(a) for a in approvers}:
        raise NotApprover(f"{who} is not an approver of task {task!r}, so cannot {action} "
                          f"(approvers: {', '.join(approvers)})")


class IdentityRequired(BadInput):
    """The task requires approvals by logged-in (OIDC) reviewers and this one is not."""


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
        _check_approver(ws, task, who, "change the identity requirement")
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
        raise FourEyes(f"{_entity(row)} {row['id']} was last written by {who} (or by a job "
                       f"{who} started); four-eyes rule: someone else must approve it")


def _check_sign_off(ws: Workspace, row: dict[str, Any], who: str, identity_kind: str,
                    action: str) -> None:
    """Every check but the version's before ``who`` may ``action`` ("approve" or "reject")
    ``row``. Rejecting takes a heuristic out of the prompt: as much a sign-off as approving."""
    _check_approver(ws, row["task"], who, action)
    if action == "approve":
        _check_identity(ws, row["task"], identity_kind, action)
        _check_status(row, (DRAFT, REJECTED), action)
        _check_four_eyes(row, who)
    else:
        _check_status(row, (DRAFT, APPROVED), action)


def sign_off_refusal(ws: Workspace, row: dict[str, Any], who: str, identity_kind: str,
                     action: str) -> str | None:
    """Why ``who`` cannot ``action`` ("approve" or "reject") ``row`` as it stands, in the words
    the refusal would use; None when they can. The app disables its button with this reason
    before the click (the refusal itself still guards the write)."""
    try:
        _check_sign_off(ws, row, check_actor(who, identity_kind), identity_kind, action)
    except BadInput as e:
        return str(e)
    return None


def stale_error(ws: Workspace, item_id: int, base_version: int,
                entity: str = HEURISTIC) -> StaleEdit:
    """The StaleEdit for a change based on ``base_version``, naming the change it missed."""
    current = fetch(ws, item_id, entity)
    rows = ws.query(
        "SELECT * FROM reviews WHERE entity = ? AND entity_id = ? "
        "AND json_extract(after, '$.version') > ? ORDER BY id LIMIT 1",
        [entity, item_id, base_version])
    theirs = rows[0] if rows else None
    if theirs is None:
        msg = (f"{entity} {item_id} is at version {current['version']}, not "
               f"{base_version}; start again from the current version")
    else:
        theirs["before"], theirs["after"] = loads(theirs["before"]), loads(theirs["after"])
        msg = (f"{entity} {item_id} changed since your version {base_version}: "
               f"{theirs['who']} did '{theirs['action']}' at {theirs['created_at']} "
               f"(now version {current['version']}, {current['status']}); redo yours on the "
               f"current version")
    return StaleEdit(msg, current, theirs)


def _check_base(ws: Workspace, row: dict[str, Any], base_version: int | None) -> None:
    if base_version is not None and base_version != row["version"]:
        raise stale_error(ws, row["id"], base_version, _entity(row))


# -- writing --------------------------------------------------------------------------------------

def audit(db: sqlite_utils.Database, who: str, identity_kind: str, entity: str,
          entity_id: int | None, action: str, before: Any, after: Any,
          comment: str | None) -> trail.Link:
    """Append one row to the audit trail (``before``/``after`` JSON-encoded here); call inside
    ``ws.write()``. The one way every stage records who did what."""
    return trail.append(
        db, who=who, identity_kind=identity_kind, entity=entity, entity_id=entity_id,
        action=action, before=None if before is None else dumps(before),
        after=None if after is None else dumps(after), comment=comment)


ANONYMOUS = SYSTEM_PREFIX + "anonymous"


def record_action(ws: Workspace, who: str | None, identity_kind: str, entity: str,
                  action: str, details: dict[str, Any], entity_id: int | None = None) -> None:
    """Audit an action that is not a review (loading data, starting or cancelling a job) as
    ``who``, or as ``pld:anonymous`` when nobody is identified (possible only without login)."""
    actor = check_actor(who, identity_kind) if who else ANONYMOUS
    with ws.write() as db:
        audit(db, actor, identity_kind if who else AUTO, entity, entity_id, action, None,
              details, None)


def apply_change(ws: Workspace, db: sqlite_utils.Database, row: dict[str, Any],
                 changes: dict[str, Any], *, who: str, identity_kind: str, action: str,
                 comment: str | None, base_version: int | None = None,
                 note: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply ``changes`` to a heuristic (or preamble) row if it is still at ``base_version``
    (default: the version in ``row``), bump its version and audit it."""
    entity = _entity(row)
    base = row["version"] if base_version is None else base_version
    cols = {**changes, "updated_at": now()}
    sets = ", ".join(f"{c} = ?" for c in cols)
    cur = db.execute(
        f"UPDATE {TABLES[entity]} SET {sets}, version = version + 1 WHERE id = ? AND version = ?",
        [*cols.values(), row["id"], base])
    if cur.rowcount != 1:
        raise stale_error(ws, row["id"], base, entity)
    after = fetch(ws, row["id"], entity)
    audit(db, who, identity_kind, entity, row["id"], action, row,
          {**after, **(note or {})}, comment)
    return after


def insert_row(db: sqlite_utils.Database, fields: dict[str, Any], *, who: str,
               identity_kind: str, comment: str | None, author: str | None = None,
               note: dict[str, Any] | None = None) -> int:
    """Insert a draft heuristic inside the caller's transaction and audit it: the one way a
    heuristic is created. Unlike :func:`create_heuristic` it accepts model writers
    (``teacher:...``), for pipeline stages; ``author`` is then the person who started the job,
    who counts as the text's last editor for four-eyes (the writer when None)."""
    ts = now()
    row = {"status": DRAFT, "version": 1, "created_by": who, "updated_by": author or who,
           "created_at": ts, "updated_at": ts, **fields}
    row["source_rule_ids"] = dumps(sorted(set(row.get("source_rule_ids") or [])))
    hid = int(db["heuristics"].insert(row).last_pk)
    after = {**row, "id": hid, "source_rule_ids": loads(row["source_rule_ids"]), **(note or {})}
    audit(db, who, identity_kind, HEURISTIC, hid, "create", None, after, comment)
    return hid


def edit(ws: Workspace, heuristic_id: int, text: str, who: str, *, base_version: int,
         identity_kind: str = SELF_DECLARED, comment: str | None = None,
         entity: str = HEURISTIC) -> dict[str, Any]:
    """Replace the text of a heuristic (or, with ``entity='preamble'``, a preamble), based on
    ``base_version``; returns the new row.

    The editor becomes ``updated_by`` (so cannot approve it), and an approved or rejected
    item goes back to draft: its approval does not cover the new text.
    """
    who, text = check_actor(who, identity_kind), _check_text(text)
    with ws.write() as db:
        row = fetch(ws, heuristic_id, entity)
        _check_base(ws, row, base_version)
        _check_status(row, LIVE, "edit")
        if text == row["text"]:
            raise BadInput(f"{entity} {heuristic_id}: the new text is the same as the old")
        changes = {"text": text, "updated_by": who, "status": DRAFT, **_NO_APPROVAL}
        return apply_change(ws, db, row, changes, who=who, identity_kind=identity_kind,
                       action="edit", comment=comment, base_version=base_version)


def approve_row(ws: Workspace, db: sqlite_utils.Database, row: dict[str, Any], who: str,
                identity_kind: str, comment: str | None,
                base_version: int | None = None) -> dict[str, Any]:
    """Approve ``row`` inside the caller's transaction after every check a sign-off needs
    (status, approver list, required identity kind, four-eyes, version): the one place that
    sets ``approved``. ``who`` must already have passed :func:`check_actor`."""
    _check_base(ws, row, base_version)
    _check_sign_off(ws, row, who, identity_kind, "approve")
    changes = {"status": APPROVED, "approved_by": who, "approved_at": now(),
               "identity_kind": identity_kind}
    return apply_change(ws, db, row, changes, who=who, identity_kind=identity_kind,
                   action="approve", comment=comment, base_version=base_version)


def approve(ws: Workspace, heuristic_id: int, who: str, *, base_version: int,
            identity_kind: str = SELF_DECLARED, comment: str | None = None,
            entity: str = HEURISTIC) -> dict[str, Any]:
    """Approve a draft (or rejected) heuristic (or preamble) at ``base_version``, the version
    the reviewer read; refused for its last editor, a non-approver, a stale version, or a
    self-declared identity on a task that requires OIDC. Returns the new row."""
    who = check_actor(who, identity_kind)
    if base_version is None:
        raise BadInput("approving needs the version you reviewed (--base-version)")
    with ws.write() as db:
        row = fetch(ws, heuristic_id, entity)
        return approve_row(ws, db, row, who, identity_kind, comment, base_version)


def reject(ws: Workspace, heuristic_id: int, who: str, *, base_version: int | None = None,
           identity_kind: str = SELF_DECLARED, comment: str | None = None,
           entity: str = HEURISTIC) -> dict[str, Any]:
    """Reject a draft or approved heuristic (or preamble): it leaves the prompt. Refused for
    a non-approver (like :func:`approve`) or a stale ``base_version``. Returns the new row."""
    who = check_actor(who, identity_kind)
    with ws.write() as db:
        row = fetch(ws, heuristic_id, entity)
        _check_base(ws, row, base_version)
        _check_sign_off(ws, row, who, identity_kind, "reject")
        return apply_change(ws, db, row, {"status": REJECTED, **_NO_APPROVAL}, who=who,
                       identity_kind=identity_kind, action="reject", comment=comment,
                       base_version=base_version)


def auto_approve_all(ws: Workspace, task: str, who: str, *, run_ids: Iterable[int],
                     on_skip: Callable[[str], None] | None = None) -> int:
    """Approve the drafts of ``task`` that runs ``run_ids`` wrote, as ``who`` with identity
    kind ``auto`` (benchmarks, ``run --auto-approve-as``); returns how many. Only those: a
    person's own draft, or one from another run, waits for a person. Drafts ``who`` wrote or
    whose job ``who`` started are skipped (four-eyes), each reported through ``on_skip`` (and
    the log) with a one-line reason."""
    who = check_actor(who, AUTO)
    task_info(ws, task)
    _check_approver(ws, task, who)
    runs = set(run_ids)
    approved = 0
    with ws.write() as db:
        for row in list_heuristics(ws, task, DRAFT):
            if row.get("run_id") not in runs:
                continue
            if normalize_name(row["updated_by"] or "") == who:
                msg = (f"heuristic {row['id']} not auto-approved: {who} edited it "
                       f"(four-eyes); someone else must approve it")
                log.warning(msg)
                if on_skip is not None:
                    on_skip(msg)
                continue
            approve_row(ws, db, row, who, AUTO, AUTO_COMMENT)
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


def create_heuristic(ws: Workspace, task: str, text: str, who: str,
                     source_rule_ids: Sequence[int] = (), origin: str = "manual", *,
                     identity_kind: str = SELF_DECLARED, comment: str | None = None) -> int:
    """Write a new draft heuristic by hand (``who`` is its author, so cannot approve it)."""
    who, text = check_actor(who, identity_kind), _check_text(text)
    task_info(ws, task)
    ids = _check_rules(ws, task, source_rule_ids)
    with ws.write() as db:
        return insert_row(db, {"task": task, "text": text, "source_rule_ids": ids,
                            "origin": origin}, who=who, identity_kind=identity_kind,
                       comment=comment)


def _shared(rows: Sequence[dict[str, Any]], column: str) -> Any:
    values = {r[column] for r in rows}
    return values.pop() if len(values) == 1 else None


def merge_heuristics(ws: Workspace, ids: Sequence[int], text: str, who: str, *,
                     base_versions: dict[int, int] | None = None,
                     identity_kind: str = SELF_DECLARED,
                     comment: str | None = None) -> int:
    """Replace several heuristics of one task by one with ``text``; returns its id.

    The new draft's sources are the union of theirs; the old ones become ``merged``.
    ``base_versions`` (id -> version the merger saw) refuses the merge if any changed since.
    """
    who, text = check_actor(who, identity_kind), _check_text(text)
    unique = sorted(set(ids))
    if len(unique) < 2:
        raise BadInput("merge needs at least two different heuristic ids")
    with ws.write() as db:
        rows = [fetch(ws, i) for i in unique]
        for r in rows:
            _check_base(ws, r, (base_versions or {}).get(r["id"]))
            _check_status(r, LIVE, "merge")
        task = _shared(rows, "task")
        if task is None:
            raise BadInput(f"heuristics {unique} belong to different tasks; cannot merge")
        sources = sorted({s for r in rows for s in r["source_rule_ids"]})
        new = insert_row(db, {"task": task, "text": text, "source_rule_ids": sources,
                           "origin": "merge", "cluster_id": _shared(rows, "cluster_id"),
                           "clustering_id": _shared(rows, "clustering_id")},
                      who=who, identity_kind=identity_kind,
                      comment=comment or f"merged from {', '.join(f'#{i}' for i in unique)}")
        for r in rows:
            apply_change(ws, db, r, {"status": MERGED, **_NO_APPROVAL}, who=who,
                    identity_kind=identity_kind, action="merge",
                    comment=comment or f"merged into #{new}", note={"merged_into": new},
                    base_version=(base_versions or {}).get(r["id"]))
    return new


def split_heuristic(ws: Workspace, heuristic_id: int, texts: Sequence[str], who: str, *,
                    base_version: int | None = None, identity_kind: str = SELF_DECLARED,
                    comment: str | None = None) -> list[int]:
    """Replace one heuristic by several drafts (each keeps all its sources); the old one
    becomes ``split``. Returns the new ids in the order of ``texts``."""
    who = check_actor(who, identity_kind)
    parts = [_check_text(t) for t in texts]
    if len(parts) < 2:
        raise BadInput("split needs at least two texts")
    with ws.write() as db:
        row = fetch(ws, heuristic_id)
        _check_base(ws, row, base_version)
        _check_status(row, LIVE, "split")
        fields = {k: row[k] for k in ("task", "source_rule_ids", "cluster_id", "clustering_id")}
        new = [insert_row(db, {**fields, "text": t, "origin": "split"}, who=who,
                       identity_kind=identity_kind,
                       comment=comment or f"split from #{heuristic_id}") for t in parts]
        apply_change(ws, db, row, {"status": SPLIT, **_NO_APPROVAL}, who=who,
                identity_kind=identity_kind, action="split",
                comment=comment or f"split into {', '.join(f'#{i}' for i in new)}",
                base_version=base_version, note={"split_into": new})
    return new


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


class StaleDescription(BadInput):
    """The task's description changed since the editor read it."""


def set_description(ws: Workspace, task: str, text: str, who: str, *,
                    base: str | None = None, identity_kind: str = SELF_DECLARED,
                    comment: str | None = None) -> bool:
    """Keep ``text`` as the description of ``task`` (what teacher and student read first);
    False when it already is.

    ``base`` is the description the editor started from: when someone changed it since, the
    edit is refused (:class:`StaleDescription`) rather than silently overwriting theirs. When
    the task has an approver list only its members may change the description, since it goes
    into every prompt built from now on. Prompt versions already built keep their text.
    """
    who = check_actor(who, identity_kind)
    text = " ".join((text or "").split())
    if not text:
        raise BadInput("a task description cannot be empty")
    with ws.write() as db:
        current = task_info(ws, task).description
        if base is not None and " ".join(base.split()) != " ".join(current.split()):
            raise StaleDescription(f"the description of task {task!r} was changed since you "
                                   f"read it; it now reads: {current}")
        _check_approver(ws, task, who, "change its description")
        if text == current:
            return False
        db.execute("UPDATE tasks SET description = ? WHERE name = ?", [text, task])
        audit(db, who, identity_kind, "task", None, "describe",
              {"task": task, "description": current}, {"task": task, "description": text},
              comment)
        _follow_description(ws, db, task, current, text, who, identity_kind)
    return True


def _follow_description(ws: Workspace, db: sqlite_utils.Database, task: str, old: str,
                        new: str, who: str, identity_kind: str) -> None:
    """Carry a new description into the task's preamble as an edit by ``who`` (a draft again,
    for someone else to approve). A preamble someone rewrote so that it no longer holds the old
    description is left as it is: their wording is not overwritten."""
    rows = ws.query("SELECT * FROM preambles WHERE task = ?", [task])
    if not rows or not old.strip() or old.strip() not in rows[0]["text"]:
        return
    row = rows[0]
    text = row["text"].replace(old.strip(), new.strip(), 1)
    if text != row["text"]:
        apply_change(ws, db, row, {"text": text, "updated_by": who, "status": DRAFT,
                                   **_NO_APPROVAL},
                     who=who, identity_kind=identity_kind, action="edit",
                     comment="the task description changed")
