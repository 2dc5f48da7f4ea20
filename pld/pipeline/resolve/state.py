"""The conflict loop's state: its constants, the iteration records stored in ``evaluations``
(method ``resolve-iter-N``), the proposals' rows and the validation answers they came from.

Everything here reads or writes rows; :mod:`pld.pipeline.resolve.loop` runs the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pld.errors import BadInput
from pld.identity import Identity
from pld.pipeline.calibrate import DEFAULT_METHOD as DEFAULT_CALIBRATION
from pld.pipeline.calibrate import apply_bias
from pld.pipeline.runs import ProgressCallback
from pld.tasks.store import TaskInfo, task_info
from pld.workspace import Workspace, dumps, loads

STAGE = "resolve"
PREDICT_KIND = "resolve-predict"
METHOD_PREFIX = "resolve-iter-"
VAL = "val"
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
PROPOSAL_STATUSES = (PENDING, ACCEPTED, REJECTED)
ADD, EDIT, REMOVE = "add", "edit", "remove"
KINDS = (ADD, EDIT, REMOVE)
CONVERGED, MAX_ITERATIONS, TEACHER_FAILED = "converged", "max-iterations", "teacher-failed"
AWAITING_REVIEW, NO_ERRORS = "awaiting-review", "no-errors"
# The automatic run could change nothing on evidence: what is left waits for people, with its CI.
INDISTINCT = "not-distinguishable"
AUTO_COMMENT = "auto-accepted (benchmark)"
REVERT_ACTOR = Identity.system("resolve")  # a reserved name: no person can act as the loop
TFIDF = "tfidf"
MAX_TOKENS = 1024
MAX_ADD = 2
TEXT_CHARS = 1500  # an example longer than this is cut in the teacher prompt


class SplitLeakError(RuntimeError):
    """An item outside the validation split reached the conflict loop (never expected)."""


@dataclass
class ResolveSummary:
    """What one :func:`~pld.pipeline.resolve.loop.resolve` call did. ``history`` is
    :func:`~pld.pipeline.resolve.view.iteration_history` of this loop's series;
    ``iterations_run`` counts the iterations this call evaluated."""

    run_id: int
    task: str
    iterations_run: int
    stop_reason: str
    best_version: int | None
    best_macro_f1: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    proposals_made: int = 0
    pending: int = 0
    failed_groups: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopOptions:
    """The settings of one :func:`~pld.pipeline.resolve.loop.resolve` call, as its parts see
    them."""

    task: TaskInfo
    student: str
    teacher: str
    iterations: int
    auto_accept_as: Identity | None  # of kind auto
    n_success: int | None
    val_limit: int | None
    seed: int
    min_delta: float
    attribution: str
    top_k: int
    max_examples: int
    concurrency: int | None
    on_progress: ProgressCallback | None
    retry_failed: bool = False
    calibration: str | None = DEFAULT_CALIBRATION
    impact: bool = True


def iteration_of(method: str) -> int:
    return int(method[len(METHOD_PREFIX):])


def iteration_records(ws: Workspace, task: str) -> list[dict[str, Any]]:
    """Every iteration of ``task``: the ``resolve`` bookkeeping plus the evaluation columns."""
    out = []
    for row in ws.query(
        "SELECT * FROM evaluations WHERE task = ? AND method LIKE ? ORDER BY id",
        [task, METHOD_PREFIX + "%"],
    ):
        metrics = loads(row["metrics"], {})
        rec = dict(metrics.get("resolve") or {})
        rec.update(evaluation_id=row["id"], run_id=row["run_id"], student=row["student"],
                   prompt_version=row["prompt_version"], prompt_sha256=row["prompt_sha256"],
                   n=row["n"],
                   # What adoption compares: calibrated answers when the student could be
                   # calibrated (what ships), raw answers otherwise.
                   macro_f1=(metrics.get("calibrated") or metrics).get("macro_f1"),
                   raw_macro_f1=metrics.get("macro_f1"),
                   calibrated_macro_f1=(metrics.get("calibrated") or {}).get("macro_f1"),
                   metric="calibrated" if metrics.get("calibrated") else "raw",
                   bias=((metrics.get("calibration") or {}).get("bias")
                         if metrics.get("calibrated") else None),
                   accuracy=metrics.get("accuracy"), created_at=row["created_at"],
                   iteration=iteration_of(row["method"]))
        out.append(rec)
    return sorted(out, key=lambda r: r["iteration"])


def loop_series(ws: Workspace, task: str, student: str,
                val_limit: int | None) -> list[dict[str, Any]]:
    """The iterations of one loop: same student and validation limit (comparable scores)."""
    return [r for r in iteration_records(ws, task)
            if r["student"] == student and r.get("val_limit") == val_limit]


def iteration_record(ws: Workspace, task: str, iteration: int) -> dict[str, Any]:
    for r in iteration_records(ws, task):
        if r["iteration"] == iteration:
            return r
    raise BadInput(f"task {task!r} has no resolve iteration {iteration}")


def proposal_rows(ws: Workspace, task: str, iteration: int | None = None,
                  status: str | None = None) -> list[dict[str, Any]]:
    sql, args = "SELECT * FROM proposals WHERE task = ?", [task]
    if iteration is not None:
        sql += " AND iteration = ?"
        args.append(iteration)
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    return [read_evidence(r) for r in ws.query(sql + " ORDER BY id", args)]


def read_evidence(row: dict[str, Any]) -> dict[str, Any]:
    """A proposal row with its stored ``evidence`` decoded: ``evidence`` the example ids, and
    ``measured`` what a measured proposal carries besides (the change, its paired CI, the
    verdict; see :mod:`pld.pipeline.resolve.evidence`), None for the teacher's proposals."""
    stored = loads(row["evidence"], []) if isinstance(row["evidence"], str) else row["evidence"]
    measured = None
    if isinstance(stored, dict):
        stored, measured = stored.get("examples"), stored.get("measured")
    row["evidence"], row["measured"] = list(stored or []), measured
    return row


def stored_evidence(example_ids: list[int], measured: dict[str, Any] | None) -> str:
    """The ``evidence`` column of a proposal: its example ids, with the measurement when it has
    one (:func:`read_evidence` reads both shapes)."""
    if measured is None:
        return dumps(example_ids)
    return dumps({"examples": example_ids, "measured": measured})


def decision_of(ws: Workspace, proposal_id: int) -> dict[str, Any] | None:
    """The ``after`` of the review row that decided a proposal."""
    rows = ws.query(
        "SELECT after FROM reviews WHERE entity = 'proposal' AND entity_id = ? "
        "AND action IN ('accept', 'reject') ORDER BY id DESC LIMIT 1", [proposal_id])
    return loads(rows[0]["after"], {}) if rows else None


def touched_heuristics(ws: Workspace, task: str, iteration: int) -> list[int]:
    """Heuristics that accepted edit/add proposals of ``iteration``, or its revert, left as
    drafts: the loop waits for people to approve or reject them."""
    ids = [int(i) for i in iteration_record(ws, task, iteration).get("reverted_to_draft") or []]
    for p in proposal_rows(ws, task, iteration, ACCEPTED):
        if p["kind"] == EDIT:
            ids.append(p["heuristic_id"])
        elif p["kind"] == ADD:
            hid = (decision_of(ws, p["id"]) or {}).get("heuristic_id")
            if hid is not None:
                ids.append(int(hid))
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return [r["id"] for r in ws.query(
        f"SELECT id FROM heuristics WHERE status = 'draft' AND id IN ({marks}) ORDER BY id", ids)]


def best_version(ws: Workspace, task: str, student: str | None = None) -> int | None:
    """The adopted (best validation macro-F1) prompt version of the latest resolve loop of
    ``task`` (of ``student``'s loop when given); None when the loop never ran."""
    recs = [r for r in iteration_records(ws, task) if student is None or r["student"] == student]
    if not recs:
        return None
    latest = max(recs, key=lambda r: r["evaluation_id"])
    return latest.get("best_version")


def examples_by_id(ws: Workspace, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = ws.query(
        "SELECT id, ext_id, split, text, label FROM examples "
        "WHERE id IN (SELECT value FROM json_each(?))", [dumps(sorted(set(ids)))])
    return {r["id"]: r for r in rows}


def run_predictions(ws: Workspace, run_id: int,
                    bias: dict[str, float] | None = None,
                    labels: list[str] | None = None) -> list[dict[str, Any]]:
    """Predictions of a run with their example, checked to be validation items only.

    With a calibration ``bias``, ``predicted`` and ``correct`` are the calibrated answer's
    (``raw`` stays the student's own answer).
    """
    rows = ws.query(
        "SELECT p.example_id, p.label AS predicted, p.raw, p.correct, p.scores, e.ext_id, "
        "e.split, e.text, e.label AS gold FROM predictions p JOIN examples e "
        "ON e.id = p.example_id WHERE p.run_id = ? ORDER BY p.example_id", [run_id])
    check_val(rows)
    for r in rows:
        if bias is not None and labels is not None:
            r["predicted"] = apply_bias(loads(r["scores"]), bias, r["predicted"], labels)
            r["correct"] = int(r["predicted"] == r["gold"])
        del r["scores"]
    return rows


def basis_predictions(ws: Workspace, task: str, basis: dict[str, Any]) -> list[dict[str, Any]]:
    """The answers of the run a proposal step worked from, calibrated as that iteration was
    scored (so the errors shown are the errors that counted)."""
    if not basis.get("run_id"):
        return []
    rec = next((r for r in iteration_records(ws, task) if r["run_id"] == basis["run_id"]), None)
    if rec is None or rec.get("bias") is None:
        return run_predictions(ws, basis["run_id"])
    return run_predictions(ws, basis["run_id"], rec["bias"], task_info(ws, task).labels)


def check_val(rows: Sequence[dict[str, Any]]) -> None:
    leaked = [r.get("example_id", r.get("id")) for r in rows if r["split"] != VAL]
    if leaked:
        # Tuning on test items would make every reported test score meaningless.
        raise SplitLeakError(f"resolve uses validation items only; got non-val items {leaked[:10]}")


def update_record(ws: Workspace, task: str, k: int, **changes: Any) -> None:
    with ws.write() as db:
        row = db.execute("SELECT id, metrics FROM evaluations WHERE task = ? AND method = ?",
                         [task, f"{METHOD_PREFIX}{k}"]).fetchone()
        metrics = loads(row[1], {})
        metrics["resolve"] = {**metrics.get("resolve", {}), **changes}
        db["evaluations"].update(row[0], {"metrics": dumps(metrics)})

