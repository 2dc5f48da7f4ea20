"""Who is answerable for one version of a reviewed text (a heuristic, a task's preamble): the one
model that four-eyes, verify, the pages and the export manifest read.

Each version records three roles, each an :class:`~pld.identity.Identity` with its kind:

* ``written_by``: who wrote the words: a person, a model (``teacher:MODEL``), PLD Studio's
  template (``pld:template``), or nobody identified (a file uploaded without a name);
* ``started_by``: the person who started the job (or the load) that wrote it, if any;
* ``accepted_by``: the person who accepted the proposal that wrote it, if any.

Four-eyes excludes every person in those roles from approving that version, and a text whose
writer is unidentified cannot be approved by anyone until a named person saves it. The roles
are stored as columns of the item's row (:data:`COLUMNS`), so every audited change carries them
in its ``before`` and ``after``; :func:`written_in_trail` reads them back from the trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pld.errors import BadInput
from pld.identity import (
    IDENTITY_KINDS,
    SELF_DECLARED,
    SYSTEM_PREFIX,
    TEACHER_PREFIX,
    Identity,
)
from pld.workspace import Workspace, loads

TEMPLATE = Identity.system("template")  # the product's own text: the student template
UNNAMED_UPLOAD = Identity.system("upload")  # a description or file loaded with no name given
ANONYMOUS = Identity.system("anonymous")  # an action nobody was identified for
_UNIDENTIFIED = {UNNAMED_UPLOAD.name, ANONYMOUS.name}
ROLES = ("written_by", "started_by", "accepted_by")
COLUMNS = tuple(c for role in ROLES for c in (role, f"{role}_kind"))


def stored_identity(name: str | None, kind: str | None = None) -> Identity | None:
    """The identity a row recorded as ``name`` and ``kind``: a model or PLD Studio's step for a
    reserved name, else the person (self-declared when the kind is unknown); None for no name.
    A stored name no person could act under counts as nobody identified."""
    if not name:
        return None
    if name.startswith(TEACHER_PREFIX):
        return Identity.teacher(name[len(TEACHER_PREFIX):])
    if name.startswith(SYSTEM_PREFIX):
        return Identity.system(name[len(SYSTEM_PREFIX):])
    try:
        return Identity(name, kind if kind in IDENTITY_KINDS else SELF_DECLARED)
    except BadInput:
        return ANONYMOUS


def _writer(who: Identity) -> str:
    if who.name.startswith(TEACHER_PREFIX):
        return f"teacher {who.name[len(TEACHER_PREFIX):]}"
    if who == TEMPLATE:
        return "PLD Studio's template"
    if who == UNNAMED_UPLOAD:
        return "an upload without a name"
    if who == ANONYMOUS:
        return "someone not identified"
    return who.name if who.is_person else f"PLD Studio ({who.name})"


@dataclass(frozen=True)
class Authorship:
    """Who wrote one version of a text, who started the job that wrote it and who accepted the
    proposal that wrote it (see the module docstring)."""

    written_by: Identity
    started_by: Identity | None = None
    accepted_by: Identity | None = None

    @property
    def identified(self) -> bool:
        """False when nobody named wrote the text (an upload without a name): then nobody may
        approve it until a named person saves it."""
        return self.written_by.name not in _UNIDENTIFIED

    def persons(self) -> frozenset[str]:
        """The names of the people in any role: four-eyes keeps each of them from approving."""
        return frozenset(r.name for r in (self.written_by, self.started_by, self.accepted_by)
                         if r is not None and r.is_person)

    def actor(self) -> Identity:
        """Who answers for the change that made this version (the audit row's actor): the
        acceptor, else the starter, else the writer."""
        return self.accepted_by or self.started_by or self.written_by

    @property
    def by(self) -> str:
        """The authors in words, after "by": "bob", "teacher local/default in a job started by
        ana", "teacher x, accepted by ana", "PLD Studio's template, loaded by ana"."""
        words = _writer(self.written_by)
        if self.started_by is not None:
            words += (f", loaded by {self.started_by.name}" if self.written_by == TEMPLATE
                      else f" in a job started by {self.started_by.name}")
        if self.accepted_by is not None:
            words += f", accepted by {self.accepted_by.name}"
        return words

    def sentence(self) -> str:
        """A plain sentence for pages and refusals: "written by teacher local/default in a job
        started by ana", "written by ana", "uploaded without a name"."""
        if self.written_by == UNNAMED_UPLOAD and self.started_by is None:
            return "uploaded without a name"
        return f"written by {self.by}"

    def columns(self) -> dict[str, str | None]:
        """The roles as the row's columns (:data:`COLUMNS`): each name and its identity kind."""
        out: dict[str, str | None] = {}
        for role in ROLES:
            who: Identity | None = getattr(self, role)
            out[role] = who.name if who else None
            out[f"{role}_kind"] = who.kind if who else None
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Authorship:
        """The authorship a row (or a trail row's ``before``/``after``) records. A row written
        before the roles had columns names its last writer ``updated_by`` (for a job's draft,
        the person who started it), else ``created_by``; none at all is nobody identified."""
        if row.get("written_by"):
            return cls(stored_identity(row["written_by"], row.get("written_by_kind"))
                       or ANONYMOUS,
                       stored_identity(row.get("started_by"), row.get("started_by_kind")),
                       stored_identity(row.get("accepted_by"), row.get("accepted_by_kind")))
        return cls(stored_identity(row.get("updated_by") or row.get("created_by")) or ANONYMOUS)


@dataclass(frozen=True)
class Written:
    """How the trail records the writing of an item's text: the row that wrote it, that row's
    actor, the text it wrote and the authorship it set."""

    row_id: int
    actor: Identity
    text: str
    authorship: Authorship

    def excluded(self) -> frozenset[str]:
        """Everyone four-eyes keeps from approving this text: the people in its roles and the
        person who made the change."""
        return self.authorship.persons() | ({self.actor.name} if self.actor.is_person
                                            else frozenset())


def written_in_trail(ws: Workspace, entity: str, entity_id: int,
                     before_row: int | None = None) -> Written | None:
    """The trail's record of who wrote the text that ``entity`` ``entity_id`` had just before
    trail row ``before_row`` (None: has now): the last earlier row whose ``after`` changed its
    text or its authorship (a decision row carries both unchanged, so a later change of the
    table does not count); None when the trail has none."""
    sql = "SELECT id, who, identity_kind, before, after FROM reviews WHERE entity = ? " \
          "AND entity_id = ?"
    args: list[Any] = [entity, entity_id]
    if before_row is not None:
        sql += " AND id < ?"
        args.append(before_row)
    for r in ws.query(sql + " ORDER BY id DESC", args):
        before, after = loads(r["before"], {}) or {}, loads(r["after"], {}) or {}
        if "text" not in after:
            continue
        wrote = Authorship.from_row(after)
        if (not before or before.get("text") != after.get("text")
                or Authorship.from_row(before) != wrote):
            actor = stored_identity(r["who"], r["identity_kind"]) or ANONYMOUS
            return Written(int(r["id"]), actor, str(after["text"]), wrote)
    return None
