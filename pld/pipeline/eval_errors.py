"""The wrong items of one stored evaluation: what an analyst reads after its scores.

An evaluation stores its metrics; its items live in ``predictions`` (the run's rows: the
student's reply, the label parsed from it, and each label's score) beside ``examples`` (text,
gold). The calibrated answer is not stored per item: it is recomputed here exactly as
:func:`~pld.pipeline.evaluate.evaluate` computed it, from the stored scores and the bias in
``metrics["calibration"]``, so the list agrees with the calibrated confusion matrix.

An item is wrong when its *judged* answer differs from gold: the calibrated answer when the
evaluation has calibrated answers, else the raw one (``judged_by`` says which, and a caller may
ask for the raw answers of a calibrated evaluation). The ``answer`` filter reads the judged
answer too, so ``gold=G, answer=A`` is the (G, A) cell of that confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pld.errors import BadInput
from pld.metrics import UNPARSEABLE
from pld.pipeline.calibrate import FITTED, apply_bias
from pld.tasks.store import task_info
from pld.workspace import Workspace, loads, row_by_id

RAW, CALIBRATED = "raw", "calibrated"


@dataclass(frozen=True)
class WrongItems:
    """The wrong items of evaluation ``evaluation``, by example id.

    Each item: ``example_id`` (the workspace row), ``item`` (the task's own id of it), ``text``,
    ``gold``, ``raw`` (the label parsed from the reply, None when unparseable), ``reply`` (the
    student's text as written), ``calibrated`` (None when the evaluation has no calibration),
    ``answer`` (the judged one of the two), ``judged_by`` and ``scores`` (each label's score,
    None when the backend gave none).
    """

    evaluation: int
    task: str
    split: str
    method: str
    labels: list[str]
    judged_by: str
    calibrated: bool
    n: int
    gold: str | None = None
    answer: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def _bias(metrics: dict[str, Any]) -> dict[str, float] | None:
    """The bias the evaluation's calibrated answers came from; None when it has none."""
    cal = metrics.get("calibration") or {}
    if metrics.get("calibrated") and cal.get("status") == FITTED and cal.get("bias"):
        return cal["bias"]
    return None


def _check_label(value: str | None, options: list[str], what: str, eval_id: int) -> None:
    if value is not None and value not in options:
        raise BadInput(f"evaluation {eval_id}: {what} {value!r} is not one of "
                       f"{', '.join(options)}")


def wrong_items(ws: Workspace, eval_id: int, *, gold: str | None = None,
                answer: str | None = None, judged_by: str | None = None) -> WrongItems:
    """The items evaluation ``eval_id`` got wrong, by example id (the order they were scored).

    ``judged_by``: ``"calibrated"`` or ``"raw"``; None takes the calibrated answers when the
    evaluation has them, else the raw ones. ``gold`` and ``answer`` keep only the items with
    that gold label and that judged answer (``"(unparseable)"`` for a reply naming no label).
    An unknown evaluation, label or ``judged_by`` is :class:`BadInput`.
    """
    ev = row_by_id(ws, "evaluations", eval_id, "evaluation", {"metrics": {}})
    labels = task_info(ws, ev["task"]).labels
    bias = _bias(ev["metrics"])
    if judged_by is None:
        judged_by = CALIBRATED if bias is not None else RAW
    if judged_by not in (RAW, CALIBRATED):
        raise BadInput(f"judged_by must be {RAW!r} or {CALIBRATED!r}, got {judged_by!r}")
    if judged_by == CALIBRATED and bias is None:
        raise BadInput(f"evaluation {eval_id} has no calibrated answers")
    _check_label(gold, labels, "gold label", eval_id)
    _check_label(answer, [*labels, UNPARSEABLE], "answer", eval_id)
    rows = ws.query(
        "SELECT p.example_id, p.raw AS reply, p.label AS raw, p.scores, e.ext_id, e.text, "
        "e.label AS gold FROM predictions p JOIN examples e ON e.id = p.example_id "
        "WHERE p.run_id = ? ORDER BY p.example_id", [ev["run_id"]])
    errors = []
    for r in rows:
        stored = loads(r["scores"])
        # Stored JSON has its keys sorted: scores follow the task's label order instead.
        scores = None if stored is None else {k: stored[k] for k in labels if k in stored}
        calibrated = apply_bias(scores, bias, r["raw"], labels) if bias is not None else None
        judged = calibrated if judged_by == CALIBRATED else r["raw"]
        if judged == r["gold"]:
            continue
        if gold is not None and r["gold"] != gold:
            continue
        if answer is not None and (judged if judged is not None else UNPARSEABLE) != answer:
            continue
        errors.append({
            "example_id": r["example_id"], "item": r["ext_id"], "text": r["text"],
            "gold": r["gold"], "raw": r["raw"], "reply": r["reply"], "calibrated": calibrated,
            "answer": judged, "judged_by": judged_by, "scores": scores})
    return WrongItems(evaluation=eval_id, task=ev["task"], split=ev["split"],
                      method=ev["method"], labels=labels, judged_by=judged_by,
                      calibrated=bias is not None, n=len(rows), gold=gold, answer=answer,
                      errors=errors)
