"""Reviewed items as rows: their statuses, reading one back, and the one versioned, audited
change that every review action makes.

A reviewed item is a heuristic (``heuristics``) or a task's preamble (``preambles``). Every
change appends one row to ``reviews`` (who, identity kind, when, action, the row before and after
as JSON, comment) through :func:`audit`, which chains it (:mod:`pld.trail`); nothing there is
ever updated or deleted. Every change of a text sets its whole
:class:`~pld.authorship.Authorship` with it (:func:`insert_item`, :func:`apply_change`), so the
trail's ``before`` and ``after`` say who wrote each version.

Concurrency is optimistic. An item's ``version`` is bumped by every change (an approval too, so
an edit prepared before someone approved cannot silently undo that approval). A change based on
an older version is refused with :class:`StaleEdit`, which carries the row as it is now and the
review row of the change that was missed. The ``UPDATE ... WHERE version = ?`` runs inside one
write transaction, so of two processes acting on the same version exactly one wins.

This module sits below the task store, so that a reloaded task file can carry its new
description into the preamble through the same audited change as a person's edit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlite_utils

from pld import trail
from pld.authorship import Authorship
from pld.errors import BadInput
from pld.identity import Identity
from pld.workspace import Workspace, dumps, loads, now

DRAFT, APPROVED, REJECTED, MERGED, SPLIT = "draft", "approved", "rejected", "merged", "split"
STATUSES = (DRAFT, APPROVED, REJECTED, MERGED, SPLIT)
LIVE = (DRAFT, APPROVED, REJECTED)  # statuses a reviewer can still act on
HEURISTIC, PREAMBLE = "heuristic", "preamble"
TABLES = {HEURISTIC: "heuristics", PREAMBLE: "preambles"}  # reviewed items and their tables
NO_APPROVAL = {"approved_by": None, "approved_at": None, "identity_kind": None}


class StaleEdit(BadInput):
    """The action was based on an old version. ``current`` is the row now; ``theirs`` is the
    review row of the first change the actor had not seen (None if there is none)."""

    def __init__(self, message: str, current: dict[str, Any], theirs: dict[str, Any] | None):
        super().__init__(message)
        self.current = current
        self.theirs = theirs


def decode_heuristic(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (a ``heuristics`` row) with its ``source_rule_ids`` JSON decoded, in place."""
    row["source_rule_ids"] = loads(row["source_rule_ids"], [])
    return row


def fetch(ws: Workspace, item_id: int, entity: str = HEURISTIC) -> dict[str, Any]:
    """The heuristic (or preamble) row, JSON decoded, without sources; BadInput if none."""
    rows = ws.query(f"SELECT * FROM {TABLES[entity]} WHERE id = ?", [item_id])
    if not rows:
        raise BadInput(f"{entity} {item_id} not found")
    return decode_heuristic(rows[0]) if entity == HEURISTIC else rows[0]


def entity_of(row: dict[str, Any]) -> str:
    """Which kind of reviewed item ``row`` is: :data:`HEURISTIC` or :data:`PREAMBLE`."""
    return HEURISTIC if "source_rule_ids" in row else PREAMBLE


def check_status(row: dict[str, Any], allowed: Iterable[str], action: str) -> None:
    """:class:`BadInput` unless ``row``'s status is one of ``allowed`` for ``action``."""
    if row["status"] not in allowed:
        raise BadInput(f"{entity_of(row)} {row['id']} is {row['status']}; cannot {action} it")


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


def check_base(ws: Workspace, row: dict[str, Any], base_version: int | None) -> None:
    """:class:`StaleEdit` when ``base_version`` is given and ``row`` is no longer at it."""
    if base_version is not None and base_version != row["version"]:
        raise stale_error(ws, row["id"], base_version, entity_of(row))


def audit(db: sqlite_utils.Database, who: Identity, entity: str, entity_id: int | None,
          action: str, before: Any, after: Any, comment: str | None) -> trail.Link:
    """Append one row to the audit trail as ``who`` (its name and kind), ``before``/``after``
    JSON-encoded here; call inside ``ws.write()``. The one way every stage records who did
    what."""
    return trail.append(
        db, who=who.name, identity_kind=who.kind, entity=entity, entity_id=entity_id,
        action=action, before=None if before is None else dumps(before),
        after=None if after is None else dumps(after), comment=comment)


def insert_item(db: sqlite_utils.Database, entity: str, fields: dict[str, Any], *,
                who: Identity, authorship: Authorship, comment: str | None,
                note: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """Insert a draft heuristic (or preamble) written as ``authorship`` and audit its creation
    as ``who``, inside the caller's transaction; the new id and the row as inserted.
    ``fields`` are stored as given (JSON columns already encoded)."""
    ts = now()
    row = {"status": DRAFT, "version": 1, "created_by": authorship.written_by.name,
           "created_at": ts, "updated_at": ts, **fields, **authorship.columns()}
    item_id = int(db[TABLES[entity]].insert(row).last_pk)
    row["id"] = item_id
    after = {**row, "source_rule_ids": loads(row["source_rule_ids"])} \
        if entity == HEURISTIC else dict(row)
    audit(db, who, entity, item_id, "create", None, {**after, **(note or {})}, comment)
    return item_id, row


def apply_change(ws: Workspace, db: sqlite_utils.Database, row: dict[str, Any],
                 changes: dict[str, Any], *, who: Identity, action: str,
                 comment: str | None, base_version: int | None = None,
                 note: dict[str, Any] | None = None,
                 authorship: Authorship | None = None) -> dict[str, Any]:
    """Apply ``changes`` to a heuristic (or preamble) row if it is still at ``base_version``
    (default: the version in ``row``), bump its version and audit it. A change of the text
    needs the new text's ``authorship``, which replaces the row's whole authorship."""
    if authorship is None and "text" in changes:
        raise ValueError("a change of the text needs its authorship")
    entity = entity_of(row)
    base = row["version"] if base_version is None else base_version
    cols = {**changes, **(authorship.columns() if authorship else {}), "updated_at": now()}
    sets = ", ".join(f"{c} = ?" for c in cols)
    cur = db.execute(
        f"UPDATE {TABLES[entity]} SET {sets}, version = version + 1 WHERE id = ? AND version = ?",
        [*cols.values(), row["id"], base])
    if cur.rowcount != 1:
        raise stale_error(ws, row["id"], base, entity)
    after = fetch(ws, row["id"], entity)
    audit(db, who, entity, row["id"], action, row,
          {**after, **(note or {})}, comment)
    return after
