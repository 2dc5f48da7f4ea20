"""Evidence for every heuristic: its measured effect on the student, leave-one-out on validation.

For the current approved set, the student answers the validation split under the full prompt,
under the prompt without each heuristic in turn, and under the prompt with no heuristic at all.
A heuristic's *effect* is validation macro-F1 with it minus without it, with a paired bootstrap
95% interval, and the answers it *fixes* (right with it, wrong without) and *breaks* (the
reverse). Each prompt gets its own calibration (:mod:`pld.pipeline.calibrate`), fitted on the
same validation items, and the effect is read on calibrated answers when every prompt could be
calibrated (what ships), on raw answers otherwise; both are kept.

Reports are stored in ``impacts`` per (prompt text, student, validation limit, calibration), so
the Heuristics page and ``review impact`` show them without asking the model again. All calls go
through the cache, so a prompt the conflict loop already ran costs nothing.
"""

from __future__ import annotations

from typing import Any

from pld.errors import BadInput, NotReady
from pld.metrics import paired_delta, score
from pld.pipeline.calibrate import (
    DEFAULT_METHOD,
    METHODS,
    calibrated_answers,
    fit_calibration,
)
from pld.pipeline.runs import ProgressCallback
from pld.pipeline.student import predict, prompt_text, sha256_text
from pld.review import approved_heuristics
from pld.tasks.store import task_info
from pld.workspace import Workspace, dumps, loads, now

KIND = "impact"
N_BOOT = 1000


def _answers(ws: Workspace, task: str, student: str, text: str, *, val_limit: int | None,
             calibration: str | None, concurrency: int | None,
             on_progress: ProgressCallback | None) -> dict[str, Any]:
    """The student's raw and (when possible) calibrated validation answers under ``text``."""
    res = predict(ws, task, student, system_prompt=text, split="val", limit=val_limit,
                  kind=KIND, concurrency=concurrency, on_progress=on_progress)
    labels = task_info(ws, task).labels
    cal = None
    if calibration is not None:
        fitted = fit_calibration(ws, task, student, text, res, method=calibration,
                                 val_limit=val_limit)
        if fitted.available:
            cal = calibrated_answers(res.scores, res.pred, fitted.bias, labels)
    return {"gold": res.gold, "raw": res.pred, "calibrated": cal, "ids": res.example_ids}


def _scores(a: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    out = {"macro_f1": score(a["gold"], a["raw"], labels, n_boot=0)["macro_f1"]}
    if a["calibrated"] is not None:
        out["calibrated_macro_f1"] = score(a["gold"], a["calibrated"], labels,
                                           n_boot=0)["macro_f1"]
    return out


def _stored(ws: Workspace, key: dict[str, Any]) -> dict[str, Any] | None:
    rows = ws.query(
        "SELECT report FROM impacts WHERE task = ? AND student = ? AND prompt_sha256 = ? "
        "AND val_limit IS ? AND calibration = ?",
        [key["task"], key["student"], key["prompt_sha256"], key["val_limit"],
         key["calibration"]])
    return loads(rows[0]["report"]) if rows else None


def current_prompt_sha(ws: Workspace, task: str) -> str | None:
    """The sha256 of the prompt the approved heuristics make now (None when none is approved)."""
    rows = approved_heuristics(ws, task)
    if not rows:
        return None
    return sha256_text(prompt_text(ws, task, [r["text"] for r in rows]))


def measure_impact(
    ws: Workspace,
    task: str,
    student: str,
    *,
    val_limit: int | None = None,
    calibration: str | None = DEFAULT_METHOD,
    seed: int = 0,
    concurrency: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Measure each approved heuristic's effect on ``student`` over the first ``val_limit``
    validation items, store the report and return it (the stored one when it exists).

    Heuristics come harmful first (lowest effect). ``calibration`` None reads raw answers only.
    Raises :class:`NotReady` when no heuristic is approved.
    """
    if calibration is not None and calibration not in METHODS:
        raise BadInput(f"calibration must be one of {', '.join(METHODS)} or none")
    info = task_info(ws, task)
    rows = approved_heuristics(ws, task)
    if not rows:
        raise NotReady(f"no approved heuristics for task {task}: nothing to measure")
    texts = [r["text"] for r in rows]
    full_text = prompt_text(ws, task, texts)
    key = {"task": task, "student": student, "prompt_sha256": sha256_text(full_text),
           "val_limit": val_limit, "calibration": calibration or "none"}
    stored = _stored(ws, key)
    if stored is not None:
        return stored

    def answers(text: str) -> dict[str, Any]:
        return _answers(ws, task, student, text, val_limit=val_limit, calibration=calibration,
                        concurrency=concurrency, on_progress=on_progress)

    full = answers(full_text)
    empty = answers(prompt_text(ws, task, []))
    without = [answers(prompt_text(ws, task, texts[:i] + texts[i + 1:]))
               for i in range(len(rows))]
    # Calibrated only when every prompt could be: effects must compare like with like.
    use_cal = all(a["calibrated"] is not None for a in (full, empty, *without))
    metric = "calibrated" if use_cal else "raw"
    items = []
    for number, (row, w) in enumerate(zip(rows, without, strict=True), 1):
        effect = paired_delta(full["gold"], full[metric], w[metric], info.labels,
                              n_boot=N_BOOT, seed=seed)
        raw = effect if metric == "raw" else paired_delta(
            full["gold"], full["raw"], w["raw"], info.labels, n_boot=N_BOOT, seed=seed)
        items.append({
            "heuristic_id": row["id"], "number": number, "version": row["version"],
            "text": row["text"], "without": _scores(w, info.labels),
            "effect": effect["delta"], "ci": effect["ci"],
            "fixes": [full["ids"][i] for i in effect["a_only_right"]],
            "breaks": [full["ids"][i] for i in effect["b_only_right"]],
            "raw_effect": raw["delta"], "raw_ci": raw["ci"],
            "harmful": effect["delta"] < 0,
        })
    items.sort(key=lambda x: (x["effect"], x["number"]))
    report = {
        **key, "metric": metric, "n_val": len(full["gold"]), "seed": seed,
        "full": _scores(full, info.labels), "no_rules": _scores(empty, info.labels),
        "heuristics": items, "created_at": now(),
    }
    with ws.write() as db:
        db["impacts"].insert({**key, "report": dumps(report), "created_at": report["created_at"]},
                             ignore=True)
    return _stored(ws, key) or report


def latest_impact(ws: Workspace, task: str) -> dict[str, Any] | None:
    """The newest stored impact report of ``task``, with ``current`` saying whether it was
    measured on the heuristics approved now."""
    rows = ws.query("SELECT report FROM impacts WHERE task = ? ORDER BY id DESC LIMIT 1", [task])
    if not rows:
        return None
    report = loads(rows[0]["report"])
    report["current"] = report["prompt_sha256"] == current_prompt_sha(ws, task)
    return report
