"""Read-only summaries of a loaded task's examples, for the app's Data page."""

from __future__ import annotations

from typing import Any

from pld.tasks.store import SPLITS, task_info
from pld.workspace import Workspace, loads


def label_counts(ws: Workspace, task: str) -> dict[str, dict[str, int]]:
    """Examples per split and label: ``{split: {label: n}}``.

    Splits come in train/val/test order and only when they hold examples; labels follow the
    task's label order (every label listed, 0 when absent), then any label outside the set.
    """
    labels = task_info(ws, task).labels
    out: dict[str, dict[str, int]] = {}
    rows = ws.query("SELECT split, label, count(*) AS n FROM examples WHERE task = ? "
                    "GROUP BY split, label", [task])
    for split in SPLITS:
        got = {r["label"]: r["n"] for r in rows if r["split"] == split}
        if got:
            out[split] = {**{label: got.get(label, 0) for label in labels},
                          **{k: v for k, v in sorted(got.items()) if k not in labels}}
    return out


def split_sizes(ws: Workspace, task: str) -> dict[str, int]:
    """Examples per split (train/val/test order, only the splits that hold examples)."""
    return {split: sum(counts.values()) for split, counts in label_counts(ws, task).items()}


def preview_rows(ws: Workspace, task: str, split: str | None = None,
                 limit: int = 10) -> list[dict[str, Any]]:
    """The first ``limit`` examples (by id) of a task or one split: id, split, text, label, meta."""
    task_info(ws, task)
    sql = "SELECT id, ext_id, split, text, label, meta FROM examples WHERE task = ?"
    args: list[Any] = [task]
    if split:
        sql += " AND split = ?"
        args.append(split)
    rows = ws.query(sql + " ORDER BY id LIMIT ?", [*args, int(limit)])
    for r in rows:
        r["meta"] = loads(r["meta"], {})
    return rows
