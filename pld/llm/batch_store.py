"""The workspace's record of provider batches (tables ``batches`` and ``batch_requests``): the
states a batch and a request go through, and the reads that show them to people.
"""

from __future__ import annotations

from typing import Any

from pld.workspace import Workspace, dumps

# Local states of a batch: requests written, provider create not yet confirmed; created and
# running; cancel asked; ended at the provider, results not all landed; every result landed;
# never created (its requests go into a new batch).
SUBMITTING, OPEN, CANCELING, ENDED, LANDED, ABANDONED = (
    "submitting", "open", "canceling", "ended", "landed", "abandoned")
WAITING = (SUBMITTING, OPEN, CANCELING, ENDED)
# Request states: in a batch that has not landed; answered; failed inside the batch; never sent.
PENDING, ANSWERED, FAILED, UNSENT = "pending", "answered", "failed", "unsent"


def batch_rows(ws: Workspace, ids: set[int]) -> list[dict[str, Any]]:
    """The ``batches`` rows of local ids ``ids``, in id order."""
    if not ids:
        return []
    return ws.query("SELECT * FROM batches WHERE id IN (SELECT value FROM json_each(?)) "
                    "ORDER BY id", [dumps(sorted(ids))])


BATCH_COLUMNS = ("id", "model", "provider_batch_id", "status", "provider_status", "run_id",
                 "n_requests", "succeeded", "failed", "unreadable_lines", "created_at",
                 "submitted_at", "ended_at", "landed_at", "note")


def progress_row(row: dict[str, Any]) -> dict[str, Any]:
    """A batch's progress for people: submitted, done and failed requests, and its state."""
    return {"batch": row["id"], "provider id": row["provider_batch_id"] or "",
            "model": row["model"], "submitted": row["n_requests"],
            "done": row["succeeded"] or 0, "failed": row["failed"] or 0,
            # Ours while the provider has not said (yet) what we asked of it.
            "status": (row["status"] if row["status"] in (SUBMITTING, CANCELING, ABANDONED)
                       else row["provider_status"] or row["status"]),
            "landed": row["status"] == LANDED}


def list_batches(ws: Workspace, *, run_id: int | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """Batches newest first (those of ``run_id`` only, when given), with their progress."""
    where, args = ("WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])
    return ws.query(f"SELECT {', '.join(BATCH_COLUMNS)} FROM batches {where} "
                    "ORDER BY id DESC LIMIT ?", [*args, limit])
