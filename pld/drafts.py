"""A reviewer's private drafts: the text they typed into an edit box and its comment, kept in the
workspace until they save or discard it, so a reload or a closed tab loses nothing.

A draft belongs to one person (name and identity kind): every function takes that
:class:`~pld.identity.Identity` and reads or writes only that person's drafts, so nobody else is
ever shown them. Drafts are not reviews: they are not in the audit trail, not exported and change
nothing about the item. Each remembers the version of the item it was typed against, so a draft
older than the item can be offered with a note that the text changed since. With self-declared
names, whoever types a name sees that name's drafts, as they could sign under it.
"""

from __future__ import annotations

from typing import Any

from pld.errors import BadInput
from pld.identity import Identity
from pld.workspace import Workspace, now

TEXT, COMMENT = "text", "comment"  # the fields of an edit a draft keeps


def _owner(who: Identity) -> list[str]:
    if not who.is_person:
        raise BadInput(f"{who.name}: only a person keeps drafts")
    return [who.name, who.kind]


def save_draft(ws: Workspace, who: Identity, entity: str, entity_id: int, field: str,
               text: str, base_version: int | None) -> None:
    """Keep ``text`` as ``who``'s draft of ``field`` of the item (``entity``, ``entity_id``),
    typed against ``base_version``, replacing their earlier draft of it; an empty ``text``
    removes it (there is nothing to offer back)."""
    owner = _owner(who)
    if not text.strip():
        discard_drafts(ws, who, entity, entity_id, fields=(field,))
        return
    with ws.write() as db:
        db.execute(
            "INSERT INTO drafts (who, identity_kind, entity, entity_id, field, text, "
            "base_version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (who, identity_kind, entity, entity_id, field) DO UPDATE SET "
            "text = excluded.text, base_version = excluded.base_version, "
            "updated_at = excluded.updated_at",
            [*owner, entity, entity_id, field, text, base_version, now()])


def get_drafts(ws: Workspace, who: Identity, entity: str,
               entity_id: int) -> dict[str, dict[str, Any]]:
    """``who``'s drafts of the item, by field (``text``, ``base_version``, ``updated_at``);
    empty when they have none."""
    rows = ws.query(
        "SELECT field, text, base_version, updated_at FROM drafts WHERE who = ? AND "
        "identity_kind = ? AND entity = ? AND entity_id = ?",
        [*_owner(who), entity, entity_id])
    return {r.pop("field"): r for r in rows}


def drafted_items(ws: Workspace, who: Identity, entity: str) -> list[int]:
    """The ids of the items of kind ``entity`` on which ``who`` has a draft, the most
    recently typed first."""
    rows = ws.query(
        "SELECT entity_id, max(updated_at) AS last FROM drafts WHERE who = ? AND "
        "identity_kind = ? AND entity = ? GROUP BY entity_id ORDER BY last DESC, entity_id",
        [*_owner(who), entity])
    return [int(r["entity_id"]) for r in rows]


def discard_drafts(ws: Workspace, who: Identity, entity: str, entity_id: int,
                   fields: tuple[str, ...] | None = None) -> None:
    """Remove ``who``'s drafts of the item (only ``fields`` when given): it was saved, or they
    chose to throw it away."""
    only = f" AND field IN ({', '.join('?' * len(fields))})" if fields else ""
    with ws.write() as db:
        db.execute(
            "DELETE FROM drafts WHERE who = ? AND identity_kind = ? AND entity = ? AND "
            f"entity_id = ?{only}", [*_owner(who), entity, entity_id, *(fields or ())])


def last_saved(drafts: dict[str, dict[str, Any]]) -> str:
    """When the newest of ``drafts`` (as :func:`get_drafts` gives them) was kept."""
    return max(d["updated_at"] for d in drafts.values())


def base_version(drafts: dict[str, dict[str, Any]]) -> int | None:
    """The version of the item ``drafts`` were typed against: the text's, else the oldest."""
    if TEXT in drafts:
        return drafts[TEXT]["base_version"]
    versions = [d["base_version"] for d in drafts.values() if d["base_version"] is not None]
    return min(versions) if versions else None
