"""Runs: one ``runs`` row per stage invocation, with live progress.

Stages are idempotent (they skip work already in the workspace), so resuming is simply running
the stage again: the new run finds the finished rows and does the rest. This module keeps the
book-keeping: status, progress ``done/total`` (polled by the app), errors, and which process owns
a run so that a run whose process died (kill -9) is shown as ``interrupted`` rather than running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pld.errors import BadInput
from pld.identity import Identity
from pld.llm.budget import BudgetReached
from pld.processes import pid_alive, process_start
from pld.workspace import Workspace, dumps, loads, now, row_by_id, where_equal

ProgressCallback = Callable[[int, int], None]

RUNNING, DONE, FAILED, INTERRUPTED = "running", "done", "failed", "interrupted"


@dataclass
class Run:
    """A live run: call :meth:`advance` as work completes; progress is written to the row."""

    ws: Workspace
    id: int
    task: str
    kind: str
    total: int = 0
    done: int = 0
    on_progress: ProgressCallback | None = None
    _last_write: float = field(default=0.0, repr=False)

    def set_total(self, total: int, done: int = 0) -> None:
        """Declare how many units this run has (including those already done before it)."""
        self.total, self.done = total, done
        self._write(force=True)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.done += n
        self._write()

    def _write(self, force: bool = False) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
        # Throttled so that thousands of fast steps do not each cost a write transaction.
        t = time.monotonic()
        if force or self.done >= self.total or t - self._last_write > 0.5:
            self._last_write = t
            with self.ws.write() as db:
                db["runs"].update(self.id, {"done": self.done, "total": self.total,
                                            "updated_at": now()})


def mark_dead_runs(ws: Workspace,
                   alive: Callable[[int | None, int | None], bool] = pid_alive) -> None:
    """Runs still marked running whose process has ended become ``interrupted``, with when and
    why. ``alive`` says whether a run's process still runs (the app's job list passes one that
    knows the children it started, and reaps them)."""
    rows = ws.query("SELECT id, pid, pid_start FROM runs WHERE status = ?", [RUNNING])
    dead = [r["id"] for r in rows
            if r["pid"] != os.getpid() and not alive(r["pid"], r["pid_start"])]
    if dead:
        with ws.write() as db:
            for run_id in dead:
                db["runs"].update(run_id, {
                    "status": INTERRUPTED, "updated_at": now(), "finished_at": now(),
                    "error": "the process ended before the run finished (killed or cancelled); "
                             "start it again to resume"})


@contextmanager
def stage_run(
    ws: Workspace,
    task: str,
    kind: str,
    params: dict[str, Any],
    on_progress: ProgressCallback | None = None,
    *,
    run_id: int | None = None,
    same: tuple[str, ...] = (),
    started_by: Identity | None = None,
) -> Iterator[Run]:
    """Open a run row for one stage invocation and close it with its outcome.

    With ``run_id``, an earlier run of the same task and kind is reopened instead (to fill in
    what it left undone under its own id); the keys named in ``same`` must have the same values
    in its params, else :class:`BadInput`. An exception marks the run ``failed`` with its
    message (Ctrl-C, or reaching ``--max-cost``, marks it ``interrupted``) and propagates;
    completed work already written stays, and the next invocation resumes from it.
    ``started_by`` is the person who started the job, recorded on the run (name and identity
    kind); what it writes counts as theirs for four-eyes.
    """
    mark_dead_runs(ws)
    if run_id is None:
        with ws.write() as db:
            run_id = int(db["runs"].insert({
                "task": task, "kind": kind, "params": dumps(params), "status": RUNNING,
                "done": 0, "total": 0, "started_at": now(), "updated_at": now(),
                "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                "started_by": started_by.name if started_by else None,
                "started_by_kind": started_by.kind if started_by else None,
            }).last_pk)
    else:
        _reopen(ws, run_id, task, kind, params, same)
    run = Run(ws, run_id, task, kind, on_progress=on_progress)
    try:
        yield run
    except KeyboardInterrupt:
        _finish(ws, run, INTERRUPTED, "interrupted by user")
        raise
    except BudgetReached as e:
        # Not a failure: the run stopped where the user's limit said, and resumes from there.
        _finish(ws, run, INTERRUPTED, str(e))
        raise
    except BaseException as e:
        _finish(ws, run, FAILED, f"{type(e).__name__}: {e}")
        raise
    else:
        _finish(ws, run, DONE, None)


def _reopen(ws: Workspace, run_id: int, task: str, kind: str, params: dict[str, Any],
            same: tuple[str, ...]) -> None:
    rows = ws.query("SELECT * FROM runs WHERE id = ?", [run_id])
    if not rows or rows[0]["task"] != task or rows[0]["kind"] != kind:
        raise BadInput(f"run {run_id} is not a {kind} run of task {task}")
    row = rows[0]
    if row["status"] == RUNNING:
        raise BadInput(f"run {run_id} is still running (pid {row['pid']})")
    old = loads(row["params"], {})
    for key in same:
        if old.get(key) != params.get(key):
            raise BadInput(
                f"run {run_id} was made with {key}={old.get(key)!r}, not {params.get(key)!r}"
            )
    with ws.write() as db:
        db["runs"].update(run_id, {"status": RUNNING, "error": None, "finished_at": None,
                                   "updated_at": now(), "pid": os.getpid(),
                                   "pid_start": process_start(os.getpid())})


def _finish(ws: Workspace, run: Run, status: str, error: str | None) -> None:
    with ws.write() as db:
        db["runs"].update(run.id, {"status": status, "error": error, "done": run.done,
                                   "total": run.total, "finished_at": now(),
                                   "updated_at": now()})


def get_run(ws: Workspace, run_id: int) -> dict[str, Any]:
    """One run row with its params decoded; :class:`BadInput` when there is none."""
    return row_by_id(ws, "runs", run_id, "run", {"params": {}})


def list_runs(ws: Workspace, task: str | None = None, kind: str | None = None,
              limit: int = 50) -> list[dict[str, Any]]:
    """Most recent runs first, optionally for one task and/or kind."""
    mark_dead_runs(ws)
    where, args = where_equal({"task": task or None, "kind": kind or None})
    rows = ws.query("SELECT * FROM runs" + where + " ORDER BY id DESC LIMIT ?", [*args, limit])
    for r in rows:
        r["params"] = loads(r["params"], {})
    return rows
