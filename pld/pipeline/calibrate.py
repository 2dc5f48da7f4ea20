"""Stage 7, calibrate: a per-label bias on the student's label scores, fitted on validation only.

A small student often answers one label for almost everything although its label scores rank
the examples well: a prior bias toward that label hides the signal. Adding a per-label bias to
the scores before taking the argmax removes it. The bias belongs to one (prompt text, student):
it is fitted once on the validation split, stored in ``calibrations``, shown, exported with the
prompt and applied by every evaluation of that prompt, baselines included.

Two fitting methods:

* ``max-f1`` — the bias that maximises validation macro-F1, by coordinate ascent over the exact
  decision thresholds (each step is optimal for one label given the others);
* ``content-free`` — contextual calibration (Zhao et al. 2021): the student answers inputs that
  carry no content ("N/A", ...); the bias cancels the label distribution it gives them. It reads
  no validation labels.

Scores are log-probabilities of each label's first token (:mod:`pld.llm.label_scores`), so a bias
is exactly a ``logit_bias`` on that token in a serving stack that has one. Where the student's
backend has no scores (Anthropic) the calibration is stored as unavailable, with the reason, and
evaluations report raw answers only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pld.errors import BadInput
from pld.llm import calls
from pld.llm.base import ConfigError
from pld.llm.registry import get_backend
from pld.metrics import score
from pld.pipeline.runs import ProgressCallback
from pld.pipeline.student import (
    STUDENT_MAX_TOKENS,
    ItemPrompt,
    PredictResult,
    predict,
    sha256_text,
)
from pld.tasks.store import task_info
from pld.workspace import Workspace, dumps, loads, now

METHODS = ("max-f1", "content-free")
DEFAULT_METHOD = "max-f1"
FITTED, UNAVAILABLE = "fitted", "unavailable"
# Inputs without content for contextual calibration; their average label distribution is the
# student's prior under this prompt.
CONTENT_FREE_INPUTS = ("N/A", "[MASK]", "")
_MAX_PASSES = 10

Scores = dict[str, float]


@dataclass(frozen=True)
class Calibration:
    """A stored calibration of one (task, student, prompt text, method, validation limit).

    ``bias`` maps each label to the number added to its score (None when ``status`` is
    ``unavailable``; ``reason`` says why). ``metrics`` holds validation macro-F1 and the share
    of the most frequent answer, raw and calibrated.
    """

    id: int
    task: str
    student: str
    prompt_sha256: str
    method: str
    status: str
    bias: dict[str, float] | None
    n: int = 0
    run_id: int | None = None
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    val_limit: int | None = None

    @property
    def available(self) -> bool:
        return self.status == FITTED and self.bias is not None

    def summary(self) -> dict[str, Any]:
        """What evaluations, manifests and pages show of this calibration."""
        val = {k: v for k, v in self.metrics.items() if k != "logit_bias"}
        return {"id": self.id, "method": self.method, "status": self.status, "bias": self.bias,
                "logit_bias": self.metrics.get("logit_bias"), "fitted_on": "val",
                "n_val": self.n, "val_limit": self.val_limit, "student": self.student,
                "reason": self.reason, "val": val}


def apply_bias(scores: Scores | None, bias: dict[str, float] | None, raw: str | None,
               labels: list[str]) -> str | None:
    """The calibrated answer: the label with the highest score plus bias; ``raw`` when the
    answer has no scores or there is no bias."""
    if scores is None or bias is None:
        return raw
    return max(labels, key=lambda label: scores.get(label, -math.inf) + bias.get(label, 0.0))


def calibrated_answers(scores: list[Scores | None], raw: list[str | None],
                       bias: dict[str, float] | None, labels: list[str]) -> list[str | None]:
    """:func:`apply_bias` over many answers."""
    return [apply_bias(s, bias, r, labels) for s, r in zip(scores, raw, strict=True)]


def _matrix(scores: list[Scores], labels: list[str]) -> np.ndarray:
    return np.array([[s.get(label, -1e9) for label in labels] for s in scores], dtype=float)


def _macro_f1_many(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> np.ndarray:
    """Macro-F1 of each row of ``pred`` (candidates x items) against ``gold``."""
    total = np.zeros(pred.shape[0])
    for label in range(n_labels):
        p, g = pred == label, gold == label
        tp = (p & g).sum(axis=1)
        denom = p.sum(axis=1) + g.sum()
        total += np.divide(2 * tp, denom, out=np.zeros(pred.shape[0]), where=denom > 0)
    return total / n_labels


def _centred(bias: np.ndarray, labels: list[str]) -> dict[str, float]:
    # Only differences between labels matter; centring makes the numbers read as "toward/away".
    b = bias - bias.mean()
    return {label: round(float(v), 6) for label, v in zip(labels, b, strict=True)}


def fit_max_f1(scores: list[Scores], gold: list[str], labels: list[str]) -> dict[str, float]:
    """The per-label bias that maximises macro-F1 of ``argmax(scores + bias)`` on these items.

    Coordinate ascent: for one label at a time, every bias at which some item changes answer is
    a threshold; the midpoints between thresholds are all the distinct outcomes, and the best
    one is taken (the middle of the tied best, which keeps the boundary away from items). Stops
    when a whole pass improves nothing.
    """
    if len(scores) != len(gold) or not scores:
        raise ValueError("fit_max_f1 needs as many scored items as gold labels, at least one")
    s = _matrix(scores, labels)
    code = {label: i for i, label in enumerate(labels)}
    g = np.array([code[x] for x in gold])
    n_labels = len(labels)
    bias = np.zeros(n_labels)
    best = float(_macro_f1_many(np.argmax(s + bias, axis=1)[None, :], g, n_labels)[0])
    for _ in range(_MAX_PASSES):
        improved = False
        for j in range(n_labels):
            others = [k for k in range(n_labels) if k != j]
            shifted = s[:, others] + bias[others]
            rival = shifted.max(axis=1)
            rival_label = np.array(others)[shifted.argmax(axis=1)]
            cuts = np.unique(rival - s[:, j])
            candidates = np.concatenate(
                [[cuts[0] - 1.0], (cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + 1.0]])
            wins = s[None, :, j] + candidates[:, None] > rival[None, :]
            pred = np.where(wins, j, rival_label[None, :])
            f1 = _macro_f1_many(pred, g, n_labels)
            top = float(f1.max())
            if top > best + 1e-12:
                tied = candidates[f1 >= top - 1e-12]
                bias[j] = float(tied[np.argmin(np.abs(tied - np.median(tied)))])
                best = top
                improved = True
        if not improved:
            break
    return _centred(bias, labels)


def fit_content_free(cf_scores: list[Scores], labels: list[str]) -> dict[str, float]:
    """Contextual calibration: minus the log of the mean label distribution on content-free
    inputs (each input's label scores renormalised over the labels first)."""
    if not cf_scores:
        raise ValueError("fit_content_free needs the scores of at least one content-free input")
    s = _matrix(cf_scores, labels)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return _centred(-np.log(np.clip(p.mean(axis=0), 1e-12, None)), labels)


def _from_row(row: dict[str, Any]) -> Calibration:
    return Calibration(
        id=row["id"], task=row["task"], student=row["student"],
        prompt_sha256=row["prompt_sha256"], method=row["method"], status=row["status"],
        bias=loads(row["bias"]), n=row["n"] or 0, run_id=row["run_id"],
        reason=row["reason"] or "", metrics=loads(row["metrics"], {}),
        val_limit=row["val_limit"],
    )


def get_calibration(ws: Workspace, task: str, student: str, prompt_sha256: str, *,
                    method: str = DEFAULT_METHOD,
                    val_limit: int | None = None) -> Calibration | None:
    """The stored calibration for exactly this prompt text, student, method and limit."""
    rows = ws.query(
        "SELECT * FROM calibrations WHERE task = ? AND student = ? AND prompt_sha256 = ? "
        "AND method = ? AND val_limit IS ?",
        [task, student, prompt_sha256, method, val_limit],
    )
    return _from_row(rows[0]) if rows else None


def list_calibrations(ws: Workspace, task: str, prompt_sha256: str) -> list[Calibration]:
    """Every stored calibration of one prompt text (all students and methods), oldest first."""
    return [_from_row(r) for r in ws.query(
        "SELECT * FROM calibrations WHERE task = ? AND prompt_sha256 = ? ORDER BY id",
        [task, prompt_sha256])]


def _store(ws: Workspace, row: dict[str, Any]) -> Calibration:
    with ws.write() as db:
        db["calibrations"].insert({**row, "created_at": now()}, ignore=True)
    got = get_calibration(ws, row["task"], row["student"], row["prompt_sha256"],
                          method=row["method"], val_limit=row["val_limit"])
    assert got is not None
    return got


def _unavailable_reason(student: str) -> str | None:
    try:
        backend = get_backend(student, "student")
    except ConfigError as e:
        raise BadInput(str(e)) from e
    if not getattr(backend, "scores_choices", False):
        return (f"{student} returns no label scores (no token log-probabilities), so its "
                "answers cannot be calibrated; they are reported raw")
    return None


def _val_metrics(gold: list[str], raw: list[str | None], cal: list[str | None],
                 labels: list[str]) -> dict[str, Any]:
    r, c = score(gold, raw, labels, n_boot=0), score(gold, cal, labels, n_boot=0)
    return {"raw_macro_f1": r["macro_f1"], "calibrated_macro_f1": c["macro_f1"],
            "raw_top_share": r["top_answer_share"], "calibrated_top_share": c["top_answer_share"]}


def _content_free_scores(ws: Workspace, student: str, system_prompt: str, labels: list[str],
                         run_id: int | None, item_prompt: ItemPrompt | None) -> list[Scores]:
    out = []
    for text in CONTENT_FREE_INPUTS:
        system = system_prompt if item_prompt is None else item_prompt(text)
        res = calls.complete(ws, student, [{"role": "user", "content": text}],
                             system=system, choices=labels,
                             max_tokens=STUDENT_MAX_TOKENS, stage="calibrate", run_id=run_id,
                             role="student")
        if res.reply.label_logprobs is not None:
            out.append(res.reply.label_logprobs)
    return out


def calibrate(
    ws: Workspace,
    task: str,
    student: str,
    system_prompt: str,
    *,
    method: str = DEFAULT_METHOD,
    val_limit: int | None = None,
    concurrency: int | None = None,
    on_progress: ProgressCallback | None = None,
    item_prompt: ItemPrompt | None = None,
) -> Calibration:
    """The calibration of ``student`` under ``system_prompt``, fitted on the validation split
    (its first ``val_limit`` items by id) and stored; the stored one when it exists. With
    ``item_prompt`` each item is asked under its own prompt and ``system_prompt`` stands for
    the method (see :func:`~pld.pipeline.student.predict`).

    Only validation examples are ever read (and, for ``content-free``, inputs without content).
    The validation answers go through the call cache, so a prompt the conflict loop already ran
    costs no new call.
    """
    if method not in METHODS:
        raise BadInput(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    if val_limit is not None and val_limit < 1:
        raise BadInput(f"validation limit must be at least 1, got {val_limit}")
    sha = sha256_text(system_prompt)
    stored = get_calibration(ws, task, student, sha, method=method, val_limit=val_limit)
    if stored is not None:
        return stored
    task_info(ws, task)  # an unknown task is bad input before any call
    base = {"task": task, "student": student, "prompt_sha256": sha, "method": method,
            "split": "val", "val_limit": val_limit}
    reason = _unavailable_reason(student)
    if reason is not None:
        return _store(ws, {**base, "status": UNAVAILABLE, "reason": reason, "n": 0})
    val = predict(ws, task, student, system_prompt=system_prompt, split="val", limit=val_limit,
                  kind="calibrate", params={"method": method}, concurrency=concurrency,
                  on_progress=on_progress, item_prompt=item_prompt)
    return fit_calibration(ws, task, student, system_prompt, val, method=method,
                           val_limit=val_limit, item_prompt=item_prompt)


def fit_calibration(ws: Workspace, task: str, student: str, system_prompt: str,
                    val: PredictResult, *, method: str = DEFAULT_METHOD,
                    val_limit: int | None = None,
                    item_prompt: ItemPrompt | None = None) -> Calibration:
    """Fit and store the calibration of ``system_prompt`` from ``val``, the student's answers
    on the first ``val_limit`` validation items under it (the stored one when it exists)."""
    sha = sha256_text(system_prompt)
    stored = get_calibration(ws, task, student, sha, method=method, val_limit=val_limit)
    if stored is not None:
        return stored
    labels = task_info(ws, task).labels
    base = {"task": task, "student": student, "prompt_sha256": sha, "method": method,
            "split": "val", "val_limit": val_limit}
    _check_validation(ws, task, val.example_ids)
    scored = [i for i, sc in enumerate(val.scores) if sc is not None]
    if not scored:
        return _store(ws, {**base, "status": UNAVAILABLE, "run_id": val.run_id, "n": 0,
                           "reason": f"{student} gave no label scores on validation"})
    if method == "max-f1":
        bias = fit_max_f1([val.scores[i] for i in scored], [val.gold[i] for i in scored],
                          labels)
    else:
        cf = _content_free_scores(ws, student, system_prompt, labels, val.run_id, item_prompt)
        if not cf:
            return _store(ws, {**base, "status": UNAVAILABLE, "run_id": val.run_id, "n": 0,
                               "reason": f"{student} gave no label scores on content-free inputs"})
        bias = fit_content_free(cf, labels)
    cal = calibrated_answers(val.scores, val.pred, bias, labels)
    metrics = _val_metrics(val.gold, val.pred, cal, labels)
    metrics["logit_bias"] = _logit_bias(student, bias)
    return _store(ws, {**base, "status": FITTED, "bias": dumps(bias), "run_id": val.run_id,
                       "n": len(scored), "metrics": dumps(metrics)})


def _logit_bias(student: str, bias: dict[str, float]) -> dict[str, float] | None:
    """``{first token id: bias}`` ready for a ``logit_bias`` parameter, where the student's
    tokenizer is at hand (the embedded model); None elsewhere."""
    backend = get_backend(student, "student")
    ids = getattr(backend, "first_token_ids", None)
    if ids is None:
        return None
    by_label = ids(list(bias))
    if len(set(by_label.values())) < len(by_label):
        return None  # labels sharing a first token cannot be biased apart
    return {str(by_label[label]): value for label, value in bias.items()}


def _check_validation(ws: Workspace, task: str, example_ids: list[int]) -> None:
    """Refuse to fit on anything but validation items: a bias fitted on test items would make
    every calibrated test score a lie."""
    rows = ws.query("SELECT id FROM examples WHERE task = ? AND split != 'val' AND id IN "
                    "(SELECT value FROM json_each(?))", [task, dumps(example_ids)])
    if rows:
        raise BadInput(f"calibration is fitted on validation items only; got non-validation "
                       f"examples {[r['id'] for r in rows][:10]}")
