"""What the app's home page and ``tasks`` show: the state of a workspace at a glance."""

from __future__ import annotations

from typing import Any

from pld.tasks.store import loaded_tasks
from pld.workspace import Workspace


def _count(ws: Workspace, sql: str, args: list[Any]) -> int:
    return int(ws.query(sql, args)[0]["n"])


def task_progress(ws: Workspace, task: str) -> dict[str, Any]:
    """How far a task has come through the method: counts per stage."""
    splits = {r["split"]: r["n"] for r in ws.query(
        "SELECT split, count(*) AS n FROM examples WHERE task = ? GROUP BY split", [task])}
    rules = {r["status"]: r["n"] for r in ws.query(
        "SELECT status, count(*) AS n FROM micro_instructions WHERE task = ? GROUP BY status",
        [task])}
    heuristics = {r["status"]: r["n"] for r in ws.query(
        "SELECT status, count(*) AS n FROM heuristics WHERE task = ? GROUP BY status", [task])}
    return {
        "splits": splits,
        "rules": rules,
        "clusterings": _count(ws, "SELECT count(*) AS n FROM clusterings WHERE task = ?", [task]),
        "heuristics": heuristics,
        "prompt_versions": _count(ws, "SELECT count(*) AS n FROM prompts WHERE task = ?", [task]),
        "evaluations": _count(ws, "SELECT count(*) AS n FROM evaluations WHERE task = ?", [task]),
        "pending_proposals": _count(
            ws, "SELECT count(*) AS n FROM proposals WHERE task = ? AND status = 'pending'",
            [task]),
    }


def workspace_overview(ws: Workspace) -> dict[str, Any]:
    """Every loaded task with its progress, plus call-log totals."""
    from pld.llm.calls import summarize_calls

    return {
        "path": str(ws.path),
        "tasks": [{"name": t.name, "kind": t.kind, "labels": t.labels,
                   "description": t.description, **task_progress(ws, t.name)}
                  for t in loaded_tasks(ws)],
        "calls": summarize_calls(ws)["total"],
    }
