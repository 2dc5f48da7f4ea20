"""Restatements: rules whose condition only says again what the task description or a label's
name already says ("if the clause does not address the question, the label is irrelevant").

They carry nothing the student's prompt does not hold already. A rule's *condition* (the rule
without its "then the label is X" ending, which every rule shares) is embedded and compared with
the task description, its sentences and bracketed or comma-separated parts, and each label's
name; the highest cosine and what it was measured against are stored on the rule
(``task_similarity``, ``similar_to``). :func:`~pld.pipeline.extract.flags.restatement_reason`
turns that, with the rule's verified effect once there is one, into the ``restates_task`` flag.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from pld.pipeline.embed import DEFAULT_EMBEDDER, get_embedder
from pld.pipeline.extract.flags import RESTATES_TASK, restatement_reason
from pld.tasks.store import TaskInfo, task_info
from pld.workspace import Workspace, dumps, loads

_CONCLUSION = re.compile(
    r"[,;:]?\s*(?:then\s+)?(?:the\s+)?(?:label|answer)\s+(?:is|should\s+be|must\s+be)\s+"
    r"(\S+)\s*$", re.IGNORECASE)
_OPENING = re.compile(r"^\s*(?:if|when|whenever)\s+", re.IGNORECASE)
_PARTS = re.compile(r"(?<=[.;:!?])\s+|\s*[()]\s*|,\s+")
_SHOWN = 80  # characters of a description part named in a flag's reason


def condition(rule: str) -> str:
    """The condition of an "If <condition>, then the label is X." rule: the label X itself for
    a rule that is nothing but "The label is X.", the whole text of a rule of another form."""
    text = rule.strip().rstrip(".")
    found = _CONCLUSION.search(text)
    if found is None:
        return _OPENING.sub("", text).strip() or rule.strip()
    return _OPENING.sub("", text[:found.start()]).strip() or found.group(1)


def references(info: TaskInfo) -> list[tuple[str, str]]:
    """What a restatement restates, as (what it is, text): the task description, each of its
    sentences and parts of at least three words, and each label's name."""
    desc = info.description.strip()
    out = [("the task description", desc)] if desc else []
    for part in dict.fromkeys(p.strip(" ,.;:") for p in _PARTS.split(desc)):
        if len(part.split()) >= 3 and part != desc.strip(" ,.;:"):
            shown = part if len(part) <= _SHOWN else part[:_SHOWN - 1] + "…"
            out.append((f"the task description's words \"{shown}\"", part))
    if info.shape != "multiple-choice":  # option letters have no meaning to restate
        out += [(f"the label name {label!r}", label.replace("_", " ").replace("-", " "))
                for label in info.labels]
    return out


def measure(ws: Workspace, task: str, *, embedder: str = DEFAULT_EMBEDDER) -> list[int]:
    """Store the similarity of every ok rule of ``task`` that has none yet; return their ids."""
    rows = ws.query("SELECT id, rule FROM micro_instructions WHERE task = ? AND status = 'ok' "
                    "AND task_similarity IS NULL ORDER BY id", [task])
    refs = references(task_info(ws, task))
    if not rows or not refs:
        return []
    model = get_embedder(embedder)
    sims = model.encode([condition(r["rule"] or "") for r in rows]) @ model.encode(
        [text for _, text in refs]).T
    with ws.write() as db:
        for row, sim in zip(rows, np.asarray(sims, dtype=np.float64), strict=True):
            best = int(np.argmax(sim))
            db.execute("UPDATE micro_instructions SET task_similarity = ?, similar_to = ? "
                       "WHERE id = ?", [round(float(sim[best]), 4), refs[best][0], row["id"]])
    return [int(r["id"]) for r in rows]


def mark_restatements(ws: Workspace, task: str,
                      effects: dict[int, float] | None = None) -> int:
    """Measure the rules not measured yet and set or clear their ``restates_task`` flag; with
    ``effects`` (rule id -> verified effect), judge those rules again with their effect.

    Without ``effects`` only the newly measured rules are judged, by similarity alone: a rule
    judged with its verified effect keeps that judgement. Returns how many ok rules of the
    task carry the flag.
    """
    fresh = measure(ws, task)
    judged: dict[int, float | None] = dict.fromkeys(fresh)
    judged.update(effects or {})
    if judged:
        rows = ws.query("SELECT id, flags, task_similarity, similar_to FROM micro_instructions "
                        "WHERE task = ? AND status = 'ok' AND id IN (SELECT value FROM "
                        "json_each(?))", [task, dumps(sorted(judged))])
        with ws.write() as db:
            for row in rows:
                _set_flag(db, row, restatement_reason(row["task_similarity"], row["similar_to"],
                                                      judged[row["id"]]) is not None)
    return int(ws.query(
        "SELECT count(*) AS n FROM micro_instructions m WHERE m.task = ? AND m.status = 'ok' "
        "AND EXISTS (SELECT 1 FROM json_each(m.flags) WHERE json_each.value = ?)",
        [task, RESTATES_TASK])[0]["n"])


def _set_flag(db: Any, row: dict[str, Any], on: bool) -> None:
    flags = [f for f in loads(row["flags"], []) if f != RESTATES_TASK]
    if on:
        flags.append(RESTATES_TASK)
    db.execute("UPDATE micro_instructions SET flags = ? WHERE id = ?", [dumps(flags), row["id"]])
