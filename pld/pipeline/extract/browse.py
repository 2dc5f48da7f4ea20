"""Reading extracted rules back: a page of them with filters, their count, and one rule with
its examples (source and contrast), the teacher call that produced it and the evidence of what
it did in the student's prompt."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from pld.errors import BadInput
from pld.llm import calls
from pld.pipeline.extract.flags import restatement_reason
from pld.workspace import Workspace, loads

ClusterFilter = tuple[int, int | None]
"""(clustering id, cluster id) for :func:`list_rules`; a cluster id of None means its noise."""


class RuleFilters(TypedDict, total=False):
    """The filters :func:`list_rules` and :func:`count_rules` take, each optional.

    ``flagged``: True = any flag, False = none, a flag name = that flag. ``search`` matches rule,
    reasoning or error text (case-insensitive substring). ``cluster``: only the members of
    ``(clustering_id, cluster_id)``, or that clustering's noise when ``cluster_id`` is None.
    """

    status: str | None
    label: str | None
    flagged: bool | str | None
    search: str | None
    teacher: str | None
    cluster: ClusterFilter | None


def _where(task: str, *, status: str | None = None, label: str | None = None,
           flagged: bool | str | None = None, search: str | None = None,
           teacher: str | None = None,
           cluster: ClusterFilter | None = None) -> tuple[str, list[Any]]:
    """The SQL condition on ``micro_instructions m`` for ``task`` and the filters, with its
    arguments."""
    clauses, args = ["m.task = ?"], [task]
    if cluster is not None:
        # A subquery on cluster_members (primary key clustering_id, rule_id), so paging and
        # counting stay in SQL. Rules outside the clustering (failed ones) match no cluster.
        clustering_id, cluster_id = cluster
        member = "cm.cluster_id IS NULL" if cluster_id is None else "cm.cluster_id = ?"
        clauses.append("m.id IN (SELECT cm.rule_id FROM cluster_members cm "
                       f"WHERE cm.clustering_id = ? AND {member})")
        args += [clustering_id] if cluster_id is None else [clustering_id, cluster_id]
    if status is not None:
        clauses.append("m.status = ?")
        args.append(status)
    if label is not None:
        clauses.append("m.label = ?")
        args.append(label)
    if teacher is not None:
        clauses.append("m.teacher = ?")
        args.append(teacher)
    if flagged is True:
        clauses.append("m.flags IS NOT NULL AND m.flags != '[]'")
    elif flagged is False:
        clauses.append("(m.flags IS NULL OR m.flags = '[]')")
    elif isinstance(flagged, str):
        clauses.append("EXISTS (SELECT 1 FROM json_each(m.flags) WHERE json_each.value = ?)")
        args.append(flagged)
    if search:
        like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(m.rule LIKE ? ESCAPE '\\' OR m.reasoning LIKE ? ESCAPE '\\' "
                       "OR m.error LIKE ? ESCAPE '\\')")
        args += [like, like, like]
    return " AND ".join(clauses), args


def list_rules(ws: Workspace, task: str, *, limit: int = 50, offset: int = 0,
               **filters: Unpack[RuleFilters]) -> list[dict[str, Any]]:
    """One page of a task's micro-instructions by id, with their example's text.

    ``filters`` are those of :class:`RuleFilters`. Paging is done in SQL. By id, the order the
    table shows them in: rules extracted in parallel get their ids in the order the teacher
    answered, so example order read "5, 8, 4, 1…".
    """
    where, args = _where(task, **filters)
    rows = ws.query(
        "SELECT m.*, e.ext_id, e.split, e.text AS example_text FROM micro_instructions m "
        f"JOIN examples e ON e.id = m.example_id WHERE {where} "
        "ORDER BY m.id LIMIT ? OFFSET ?",
        [*args, limit, offset],
    )
    for row in rows:
        row["flags"] = loads(row["flags"], [])
        row["source_examples"] = loads(row["source_examples"], {}) or {}
    return rows


def count_rules(ws: Workspace, task: str, **filters: Unpack[RuleFilters]) -> int:
    """How many micro-instructions :func:`list_rules` would page through with these filters."""
    where, args = _where(task, **filters)
    return int(ws.query(f"SELECT count(*) AS n FROM micro_instructions m WHERE {where}",
                        args)[0]["n"])


def get_rule(ws: Workspace, rule_id: int) -> dict[str, Any]:
    """One micro-instruction with its source ``example`` and the raw teacher ``call`` joined.

    ``contrast``: the examples of another label it was written against (empty for a rule
    written from its example alone). ``evidence``: its ``rule_evidence`` rows, newest first
    (``items`` decoded). ``restatement``: why it is flagged ``restates_task``, judged with the
    newest verified effect, or None. ``call`` is the ``llm_calls`` row that produced the stored
    outcome (messages and params decoded, ``system`` text restored), or None when there was
    none. When that row is a cache hit, ``call["answered_by"]`` is the row whose answer it
    served (with its batch id, for an answer from a provider batch).
    """
    rows = ws.query("SELECT * FROM micro_instructions WHERE id = ?", [rule_id])
    if not rows:
        raise BadInput(f"rule {rule_id} not found in {ws.path}")
    rule = rows[0]
    rule["flags"] = loads(rule["flags"], [])
    rule["source_examples"] = loads(rule["source_examples"], {}) or {}
    rule["example"] = _example(ws, rule["example_id"])
    rule["contrast"] = [_example(ws, int(i)) for i in rule["source_examples"].get("contrast", [])]
    rule["evidence"] = ws.query("SELECT * FROM rule_evidence WHERE rule_id = ? "
                                "ORDER BY created_at DESC, rowid DESC", [rule_id])
    for row in rule["evidence"]:
        row["items"] = loads(row["items"], [])
    verified = [e["effect"] for e in rule["evidence"] if e["effect"] is not None]
    rule["restatement"] = restatement_reason(rule["task_similarity"], rule["similar_to"],
                                             verified[0] if verified else None)
    rule["call"] = None
    if rule["call_id"] is not None:
        call = ws.query(
            "SELECT c.*, t.text AS system FROM llm_calls c "
            "LEFT JOIN texts t ON t.sha256 = c.system_sha256 WHERE c.id = ?", [rule["call_id"]])
        if call:
            call[0]["messages"] = loads(call[0]["messages"], [])
            call[0]["params"] = loads(call[0]["params"], {})
            call[0]["answered_by"] = (calls.answered_by(ws, call[0]["cache_key"])
                                      if call[0]["cache_hit"] else None)
            rule["call"] = call[0]
    return rule


def _example(ws: Workspace, example_id: int) -> dict[str, Any]:
    example = ws.query("SELECT * FROM examples WHERE id = ?", [example_id])[0]
    example["meta"] = loads(example["meta"], {})
    return example
