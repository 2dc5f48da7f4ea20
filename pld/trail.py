"""The audit trail as a hash chain: every ``reviews`` row holds the sha256 of its own content
and of the row before it.

Each row's ``row_hash`` is the sha256 of its canonical JSON (every column but ``row_hash``,
``prev_hash`` included), and ``prev_hash`` is the previous row's ``row_hash`` (64 zeros for the
first). Editing any column of a stored row, deleting or reordering rows breaks the chain at that
row, and :func:`check_chain` names the first broken link. Rewriting the whole chain after an
edit is caught only against a hash kept outside the workspace: an export's manifest keeps the
chain head and the hash of every approval it relies on (see :mod:`pld.pipeline.verify`).

:func:`append` is the one way to write a ``reviews`` row: it must run inside the caller's write
transaction, which SQLite serialises, so two writers never chain onto the same row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlite_utils

GENESIS = "0" * 64
COLUMNS = ("id", "created_at", "who", "identity_kind", "entity", "entity_id", "action",
           "before", "after", "comment", "prev_hash")


class Readable(Protocol):
    """What the trail reads through: a workspace (its ``query`` takes the workspace's lock).
    Named here, not imported, because the workspace's migrations use this module."""

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """The rows of ``sql`` as dicts."""
        ...


@dataclass(frozen=True)
class Link:
    """Where the chain stands: the id and ``row_hash`` of its last row (0 and GENESIS if empty)."""

    id: int
    hash: str


@dataclass(frozen=True)
class Break:
    """The first broken link: the row id and why it does not hold."""

    row_id: int
    reason: str

    def __str__(self) -> str:
        return f"reviews row {self.row_id}: {self.reason}"


def row_hash(row: dict[str, Any]) -> str:
    """The sha256 of one ``reviews`` row's content (every column of :data:`COLUMNS`)."""
    content = {c: row.get(c) for c in COLUMNS}
    blob = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _last(db: sqlite_utils.Database) -> Link:
    got = db.execute("SELECT id, row_hash FROM reviews ORDER BY id DESC LIMIT 1").fetchone()
    return Link(int(got[0]), got[1]) if got else Link(0, GENESIS)


def append(db: sqlite_utils.Database, *, who: str, identity_kind: str, entity: str,
           entity_id: int | None, action: str, before: str | None, after: str | None,
           comment: str | None, created_at: str | None = None) -> Link:
    """Append one row to ``reviews`` (``before``/``after`` already JSON) chained to the last
    one; call inside ``ws.write()``. Returns the new row's link."""
    last = _last(db)
    row: dict[str, Any] = {
        "id": last.id + 1,
        "created_at": created_at or datetime.now(UTC).isoformat(timespec="milliseconds"),
        "who": who, "identity_kind": identity_kind, "entity": entity, "entity_id": entity_id,
        "action": action, "before": before, "after": after, "comment": comment,
        "prev_hash": last.hash,
    }
    row["row_hash"] = row_hash(row)
    db["reviews"].insert(row)
    return Link(row["id"], row["row_hash"])


def hash_existing(db: sqlite_utils.Database) -> None:
    """Chain the rows written before the trail had hashes, once, in id order (migration)."""
    prev = GENESIS
    for row in list(db.query("SELECT * FROM reviews ORDER BY id")):
        row["prev_hash"] = prev
        prev = row_hash(row)
        db.execute("UPDATE reviews SET prev_hash = ?, row_hash = ? WHERE id = ?",
                   [row["prev_hash"], prev, row["id"]])


def head(ws: Readable) -> Link:
    """The chain's last row now."""
    rows = ws.query("SELECT id, row_hash FROM reviews ORDER BY id DESC LIMIT 1")
    return Link(int(rows[0]["id"]), rows[0]["row_hash"]) if rows else Link(0, GENESIS)


def check_chain(ws: Readable, upto: int | None = None) -> Break | None:
    """The first broken link of the chain (up to row ``upto`` when given), or None when every
    row's hash matches its content and the row before it."""
    prev, prev_id = GENESIS, 0
    sql, args = "SELECT * FROM reviews", []
    if upto is not None:
        sql += " WHERE id <= ?"
        args.append(upto)
    for row in ws.query(sql + " ORDER BY id", args):
        if row["prev_hash"] != prev:
            if row["id"] != prev_id + 1:
                return Break(row["id"], f"the row before it is gone (row {prev_id + 1} "
                                        "was deleted)")
            return Break(row["id"], f"its prev_hash does not match row {prev_id} "
                                    "(a row before it was edited or replaced)")
        if row["row_hash"] != row_hash(row):
            return Break(row["id"], "its content does not match its row_hash (edited)")
        prev, prev_id = row["row_hash"], row["id"]
    return None


def get_row(ws: Readable, row_id: int) -> dict[str, Any] | None:
    """One ``reviews`` row as stored (JSON columns not decoded), or None."""
    rows = ws.query("SELECT * FROM reviews WHERE id = ?", [row_id])
    return rows[0] if rows else None
