"""Tasks and examples in the workspace: save a loaded task atomically, read it back.

Stages never need the loader classes: they read the task's label set and description from the
``tasks`` row and the rendered model inputs from ``examples``. That is also what makes a user's
custom task (which exists only in the workspace) work like a built-in one.

The task's description is the first text of its preamble, and loading is where it comes from:
:func:`save_task` drafts the preamble as written by whoever supplied the description
(:class:`~pld.authorship.Authorship`), and a changed description is carried into the preamble
by :func:`carry_description`, the one way for a person's edit
(:func:`pld.preamble.set_description`) and a reloaded file alike. Both live here, below the
review layer, so that loading a task can use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from pld import prompts
from pld.approvers import check_approver
from pld.authorship import TEMPLATE, Authorship
from pld.errors import BadInput
from pld.identity import Identity
from pld.review_rows import DRAFT, NO_APPROVAL, PREAMBLE, apply_change, audit, insert_item
from pld.workspace import Workspace, dumps, loads, now

SPLITS = ("train", "val", "test")
RULES_SLOT = "{rules}"  # the preamble's line where the numbered heuristics go


@dataclass(frozen=True)
class TaskInfo:
    """What the stages need to know about a loaded task."""

    name: str
    kind: str
    labels: list[str]
    description: str
    source: str
    params: dict[str, Any]

    @property
    def shape(self) -> str:
        """How an input is built: ``single`` (one text), ``pair`` (two parts whose relation
        decides the label) or ``multiple-choice`` (a question with lettered options)."""
        return str(self.params.get("shape") or "single")


@dataclass(frozen=True)
class Example:
    """One labelled item. ``text`` is the exact model input; ``meta`` keeps the raw fields."""

    ext_id: str
    split: str
    text: str
    label: str
    meta: dict[str, Any]


def save_task(
    ws: Workspace,
    *,
    name: str,
    kind: str,
    labels: list[str],
    description: str,
    source: str,
    params: dict[str, Any],
    examples: Iterable[Example],
    author: Authorship | None = None,
) -> dict[str, int]:
    """Store a task and its examples in one transaction; return counts per split.

    Re-loading a task with the same examples is a no-op for rows already there (matched by
    ``ext_id``); loading with a different label set is refused so that rules, heuristics and
    predictions made for the old labels are never silently orphaned.

    ``author`` supplied the description: a person, or nobody named (an upload without a name);
    None for a built-in task's own description, written by PLD Studio's template. A new task
    with an ``author`` gets its preamble drafted now, as theirs (without one, from the template
    when first needed). A reload that changes the description or adds examples is a change
    like any other: audited as the author's :meth:`~pld.authorship.Authorship.actor`, refused
    (:class:`~pld.approvers.NotApprover`) when the task has an approver list without them, and
    a new description makes the preamble their draft (:func:`carry_description`).
    """
    rows = list(examples)
    bad = [e for e in rows if e.split not in SPLITS]
    if bad:
        raise BadInput(f"task {name}: example {bad[0].ext_id} has unknown split {bad[0].split!r}")
    writer = author or Authorship(TEMPLATE)
    with ws.write() as db:
        existing = ws.query("SELECT labels, description FROM tasks WHERE name = ?", [name])
        if existing and loads(existing[0]["labels"]) != labels:
            raise BadInput(
                f"task {name}: already loaded with labels {loads(existing[0]['labels'])}; "
                f"use another --name for labels {labels}"
            )
        old = (existing[0]["description"] or "") if existing else description
        if existing:
            _check_reload(ws, db, name, rows, changed=old != description, actor=writer.actor())
        db["tasks"].upsert({
            "name": name, "kind": kind, "labels": dumps(labels), "description": description,
            "source": source, "params": dumps(params), "created_at": now(),
        }, pk="name")
        if old != description:
            audit(db, writer.actor(), "task", None, "describe",
                  {"task": name, "description": old}, {"task": name, "description": description},
                  "file reloaded")
            carry_description(ws, db, name, old, description, authorship=writer,
                              comment="the task description changed with a reloaded file")
        if author is not None and not existing:
            draft_preamble(ws, db, name, description, labels, authorship=author)
        db["examples"].insert_all(
            ({"task": name, "split": e.split, "ext_id": e.ext_id, "text": e.text,
              "label": e.label, "meta": dumps(e.meta), "created_at": now()} for e in rows),
            ignore=True, batch_size=500,
        )
    counts = {s: 0 for s in SPLITS}
    for r in ws.query(
        "SELECT split, count(*) AS n FROM examples WHERE task = ? GROUP BY split", [name]
    ):
        counts[r["split"]] = r["n"]
    return counts


def _check_reload(ws: Workspace, db: sqlite_utils.Database, task: str, rows: list[Example], *,
                  changed: bool, actor: Identity) -> None:
    """Refuse a reload of ``task`` that changes it (a new description, new examples) by
    someone not on its approver list; audit the examples it adds."""
    have = {r["ext_id"] for r in ws.query("SELECT ext_id FROM examples WHERE task = ?", [task])}
    added = len({e.ext_id for e in rows} - have)
    if changed or added:
        check_approver(ws, task, actor, "reload it")
    if added:
        audit(db, actor, "task", None, "reload", {"task": task, "examples": len(have)},
              {"task": task, "examples": len(have) + added}, f"{added} examples added")


def default_text(description: str, labels: list[str]) -> str:
    """A preamble's first draft: the ``student`` template with the task's description and
    labels, the rules left as :data:`RULES_SLOT`."""
    return prompts.render("student", description=description.strip(), heuristics=RULES_SLOT,
                          labels=", ".join(labels)).strip()


def draft_preamble(ws: Workspace, db: sqlite_utils.Database, task: str, description: str,
                   labels: list[str], *, authorship: Authorship) -> None:
    """Insert the task's first preamble, :func:`default_text` written as ``authorship``,
    inside the caller's write transaction, unless the task has one already (another writer
    may have drafted it meanwhile)."""
    if ws.query("SELECT 1 FROM preambles WHERE task = ?", [task]):
        return
    insert_item(db, PREAMBLE, {"task": task, "text": default_text(description, labels)},
                who=authorship.actor(), authorship=authorship,
                comment="drafted from the student template")


def carry_description(ws: Workspace, db: sqlite_utils.Database, task: str, old: str, new: str,
                      *, authorship: Authorship, comment: str) -> None:
    """Carry a new task description into the task's preamble as a change written as
    ``authorship`` (a draft again, for someone else to approve), audited as its actor, inside
    the caller's write transaction; a task with no preamble yet gets its first draft, written
    so. A preamble someone rewrote so that it no longer holds the old description is left as it
    is: their wording is not overwritten. The one way a description change reaches the
    preamble, for a person's edit and a reloaded file alike."""
    rows = ws.query("SELECT * FROM preambles WHERE task = ?", [task])
    if not rows:
        labels = ws.query("SELECT labels FROM tasks WHERE name = ?", [task])[0]["labels"]
        draft_preamble(ws, db, task, new, loads(labels), authorship=authorship)
        return
    if not old.strip() or old.strip() not in rows[0]["text"]:
        return
    row = rows[0]
    text = row["text"].replace(old.strip(), new.strip(), 1)
    if text != row["text"]:
        apply_change(ws, db, row, {"text": text, "status": DRAFT, **NO_APPROVAL},
                     who=authorship.actor(), action="edit", comment=comment,
                     authorship=authorship)


def task_info(ws: Workspace, name: str) -> TaskInfo:
    """The loaded task ``name``; :class:`BadInput` if it was never loaded into this workspace."""
    rows = ws.query("SELECT * FROM tasks WHERE name = ?", [name])
    if not rows:
        loaded = [r["name"] for r in ws.query("SELECT name FROM tasks ORDER BY name")]
        hint = f" (loaded: {', '.join(loaded)})" if loaded else ""
        raise BadInput(
            f"task {name!r} is not loaded in {ws.path}; run: python -m pld load {name}{hint}"
        )
    r = rows[0]
    return TaskInfo(r["name"], r["kind"], loads(r["labels"]), r["description"] or "",
                    r["source"] or "", loads(r["params"], {}))


def loaded_tasks(ws: Workspace) -> list[TaskInfo]:
    """All tasks loaded in the workspace, by name."""
    return [task_info(ws, r["name"]) for r in ws.query("SELECT name FROM tasks ORDER BY name")]


def examples(ws: Workspace, task: str, split: str | None = None,
             limit: int | None = None) -> list[dict[str, Any]]:
    """Example rows of a task (optionally one split), in a stable order (by id)."""
    sql, args = "SELECT * FROM examples WHERE task = ?", [task]
    if split:
        sql += " AND split = ?"
        args.append(split)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return ws.query(sql, args)
